// The Deploy to Azure button's template (compiled to azuredeploy.json, resource-group scope):
// the same resources as `azd up`, and the app's code from a published package. Flex Consumption
// apps take a package through the `onedeploy` site extension (Microsoft.Web/sites/extensions,
// name 'onedeploy', properties packageUri and remoteBuild; see the Azure Functions docs on
// deploying Flex Consumption apps with ARM/Bicep).

@description('Name of the environment; names and tags every resource.')
param environmentName string = 'jobs'

@description('Azure region for all resources: one that offers the Flex Consumption plan.')
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

@description('URL of the app package (a zip made by the release workflow).')
param packageUri string = 'https://github.com/OWNER/REPO/releases/latest/download/app.zip'

var token = toLower(uniqueString(subscription().id, resourceGroup().id, environmentName))

module resources 'resources.bicep' = {
  name: 'resources'
  params: {
    environmentName: environmentName
    location: location
    instanceMemoryMB: instanceMemoryMB
    maximumInstanceCount: maximumInstanceCount
    alertEmail: alertEmail
  }
}

resource site 'Microsoft.Web/sites@2024-04-01' existing = {
  name: 'func-${token}'
}

resource code 'Microsoft.Web/sites/extensions@2024-04-01' = {
  parent: site
  name: 'onedeploy'
  properties: {
    packageUri: packageUri
    remoteBuild: true
  }
  dependsOn: [
    resources
  ]
}

output AZURE_FUNCTION_APP_NAME string = resources.outputs.AZURE_FUNCTION_APP_NAME
output FUNCTION_APP_URL string = resources.outputs.FUNCTION_APP_URL
output AZURE_STORAGE_ACCOUNT_NAME string = resources.outputs.AZURE_STORAGE_ACCOUNT_NAME
output APPLICATIONINSIGHTS_NAME string = resources.outputs.APPLICATIONINSIGHTS_NAME
