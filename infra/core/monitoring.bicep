// Log Analytics and Application Insights (local auth off: the app sends telemetry with its
// identity), the jobs workbook and the alerts. The workbook and the alert queries are generated
// from shared/signals.py into dashboards/ (python -m tools.dashboards).
param workspaceName string
param insightsName string
param location string
param tags object
param alertEmail string

var alerts = loadJsonContent('../dashboards/alerts.json')
var alertNames = [
  'deadLetters'
  'queueDepth'
  'queueAge'
  'failureRate'
]

resource workspace 'Microsoft.OperationalInsights/workspaces@2023-09-01' = {
  name: workspaceName
  location: location
  tags: tags
  properties: {
    retentionInDays: 30
    sku: {
      name: 'PerGB2018'
    }
  }
}

resource insights 'Microsoft.Insights/components@2020-02-02' = {
  name: insightsName
  location: location
  tags: tags
  kind: 'web'
  properties: {
    Application_Type: 'web'
    WorkspaceResourceId: workspace.id
    DisableLocalAuth: true
  }
}

resource workbook 'Microsoft.Insights/workbooks@2023-06-01' = {
  name: guid(insights.id, 'jobs-workbook')
  location: location
  tags: tags
  kind: 'shared'
  properties: {
    displayName: 'Jobs'
    category: 'workbook'
    sourceId: insights.id
    serializedData: loadTextContent('../dashboards/workbook.json')
  }
}

resource actionGroup 'Microsoft.Insights/actionGroups@2023-01-01' = if (!empty(alertEmail)) {
  name: 'ag-${insightsName}'
  location: 'global'
  tags: tags
  properties: {
    groupShortName: 'jobs'
    enabled: true
    emailReceivers: [
      {
        name: 'operators'
        emailAddress: alertEmail
        useCommonAlertSchema: true
      }
    ]
  }
}

resource alertRules 'Microsoft.Insights/scheduledQueryRules@2023-03-15-preview' = [for name in alertNames: {
  name: '${insightsName}-${name}'
  location: location
  tags: tags
  properties: {
    displayName: 'Jobs: ${alerts[name].description}'
    description: alerts[name].description
    severity: alerts[name].severity
    enabled: true
    scopes: [
      insights.id
    ]
    evaluationFrequency: 'PT5M'
    windowSize: 'PT15M'
    criteria: {
      allOf: [
        {
          query: alerts[name].query
          timeAggregation: 'Maximum'
          metricMeasureColumn: 'value'
          operator: alerts[name].operator
          threshold: alerts[name].threshold
          failingPeriods: {
            numberOfEvaluationPeriods: 1
            minFailingPeriodsToAlert: 1
          }
        }
      ]
    }
    actions: {
      actionGroups: empty(alertEmail) ? [] : [
        actionGroup.id
      ]
    }
  }
}]

output insightsName string = insights.name
