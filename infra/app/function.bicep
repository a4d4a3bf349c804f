// The function app on the Flex Consumption plan (FC1), Python 3.11, with identity-based
// connections only: AzureWebJobsStorage__* names the account and the identity, never a key.
param planName string
param appName string
param location string
param tags object
param identityId string
param identityClientId string
param storageAccountName string
param packageContainerUrl string
param insightsName string
param instanceMemoryMB int
param maximumInstanceCount int
param queueName string
param tableName string
param containerName string

resource insights 'Microsoft.Insights/components@2020-02-02' existing = {
  name: insightsName
}

resource plan 'Microsoft.Web/serverfarms@2024-04-01' = {
  name: planName
  location: location
  tags: tags
  kind: 'functionapp'
  sku: {
    name: 'FC1'
    tier: 'FlexConsumption'
  }
  properties: {
    reserved: true
  }
}

resource site 'Microsoft.Web/sites@2024-04-01' = {
  name: appName
  location: location
  tags: union(tags, {
    'azd-service-name': 'api'
  })
  kind: 'functionapp,linux'
  identity: {
    type: 'UserAssigned'
    userAssignedIdentities: {
      '${identityId}': {}
    }
  }
  properties: {
    serverFarmId: plan.id
    httpsOnly: true
    siteConfig: {
      minTlsVersion: '1.2'
      ftpsState: 'Disabled'
    }
    functionAppConfig: {
      deployment: {
        storage: {
          type: 'blobContainer'
          value: packageContainerUrl
          authentication: {
            type: 'UserAssignedIdentity'
            userAssignedIdentityResourceId: identityId
          }
        }
      }
      scaleAndConcurrency: {
        instanceMemoryMB: instanceMemoryMB
        maximumInstanceCount: maximumInstanceCount
      }
      runtime: {
        name: 'python'
        version: '3.11'
      }
    }
  }
}

resource settings 'Microsoft.Web/sites/config@2024-04-01' = {
  parent: site
  name: 'appsettings'
  properties: {
    // Sync functions share one thread pool: room for a batch of 16 messages and HTTP besides.
    PYTHON_THREADPOOL_THREAD_COUNT: '16'
    AzureWebJobsStorage__accountName: storageAccountName
    AzureWebJobsStorage__credential: 'managedidentity'
    AzureWebJobsStorage__clientId: identityClientId
    // Names the Application Insights resource; local auth is off, so sending needs the identity.
    APPLICATIONINSIGHTS_CONNECTION_STRING: insights.properties.ConnectionString
    APPLICATIONINSIGHTS_AUTHENTICATION_STRING: 'Authorization=AAD;ClientId=${identityClientId}'
    JOBS_QUEUE_NAME: queueName
    JOBS_TABLE_NAME: tableName
    JOBS_CONTAINER_NAME: containerName
    JOBS_MAX_ATTEMPTS: '5'
    JOBS_BACKOFF_BASE_SECONDS: '2'
    JOBS_BACKOFF_MAX_SECONDS: '300'
    JOBS_LEASE_SECONDS: '60'
    JOBS_HEARTBEAT_SECONDS: '20'
    JOBS_TIME_LIMIT_SECONDS: '540'
    JOBS_SYNC_HANDLER_THREADS: '16'
    JOBS_RECONCILE_SCHEDULE: '*/30 * * * * *'
    JOBS_RECONCILE_GRACE_SECONDS: '300'
    JOBS_RETENTION_DAYS: '7'
    JOBS_PARTITIONS: '4'
    JOBS_MAX_PAYLOAD_BYTES: '1048576'
    JOBS_API_TIMEOUT_SECONDS: '20'
    // Not a secret: lets the API link each job to its telemetry in the portal (trace_url).
    JOBS_APPINSIGHTS_RESOURCE_ID: insights.id
    // Schedules: the timer that fires them (six-field NCRONTAB), and how late a fire may run as scheduled.
    JOBS_SCHEDULER_SCHEDULE: '*/5 * * * * *'
    JOBS_SCHEDULER_GRACE_SECONDS: '60'
  }
}

output name string = site.name
output url string = 'https://${site.properties.defaultHostName}'
