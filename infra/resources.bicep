// Everything the job system runs on, in one resource group. The Deploy to Azure button deploys
// the same resources (azuredeploy.json, which also deploys the code); a test keeps them in step.

@description('Name of the environment; names and tags every resource.')
param environmentName string

@description('Azure region for all resources.')
param location string = resourceGroup().location

@description('Memory of each instance, in MB.')
@allowed([
  2048
  4096
])
param instanceMemoryMB int = 2048

@description('Most instances the app may scale out to.')
@minValue(40)
@maxValue(1000)
param maximumInstanceCount int = 100

@description('Email address that alerts are sent to; empty for no email.')
param alertEmail string = ''

var token = toLower(uniqueString(subscription().id, resourceGroup().id, environmentName))
var tags = {
  'azd-env-name': environmentName
}
var names = {
  identity: 'id-${token}'
  storage: 'st${token}'
  workspace: 'log-${token}'
  insights: 'appi-${token}'
  plan: 'plan-${token}'
  app: 'func-${token}'
}
// The app's own settings (shared/config.py SETTINGS): names and defaults.
var jobs = {
  queue: 'jobs'
  table: 'jobs'
  container: 'job-payloads'
  packageContainer: 'app-package'
}

module identity 'core/identity.bicep' = {
  name: 'identity'
  params: {
    name: names.identity
    location: location
    tags: tags
  }
}

module storage 'core/storage.bicep' = {
  name: 'storage'
  params: {
    name: names.storage
    location: location
    tags: tags
    containers: [
      jobs.packageContainer
      jobs.container
    ]
    // One queue per priority (normal, high, low), each with the poison queue its trigger uses.
    queues: [
      jobs.queue
      '${jobs.queue}-poison'
      '${jobs.queue}-high'
      '${jobs.queue}-high-poison'
      '${jobs.queue}-low'
      '${jobs.queue}-low-poison'
    ]
    tables: [
      jobs.table
    ]
  }
}

module monitoring 'core/monitoring.bicep' = {
  name: 'monitoring'
  params: {
    workspaceName: names.workspace
    insightsName: names.insights
    location: location
    tags: tags
    alertEmail: alertEmail
  }
}

module access 'core/access.bicep' = {
  name: 'access'
  params: {
    storageAccountName: storage.outputs.name
    insightsName: monitoring.outputs.insightsName
    principalId: identity.outputs.principalId
  }
}

module app 'app/function.bicep' = {
  name: 'function'
  params: {
    planName: names.plan
    appName: names.app
    location: location
    tags: tags
    identityId: identity.outputs.id
    identityClientId: identity.outputs.clientId
    storageAccountName: storage.outputs.name
    packageContainerUrl: '${storage.outputs.blobEndpoint}${jobs.packageContainer}'
    insightsName: monitoring.outputs.insightsName
    instanceMemoryMB: instanceMemoryMB
    maximumInstanceCount: maximumInstanceCount
    queueName: jobs.queue
    tableName: jobs.table
    containerName: jobs.container
  }
  dependsOn: [
    access
  ]
}

output AZURE_FUNCTION_APP_NAME string = app.outputs.name
output FUNCTION_APP_URL string = app.outputs.url
output AZURE_STORAGE_ACCOUNT_NAME string = storage.outputs.name
output APPLICATIONINSIGHTS_NAME string = monitoring.outputs.insightsName
