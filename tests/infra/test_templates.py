"""Offline checks of the infrastructure: every template parses, the security rules hold (and
each rule fails on a template that breaks it), the settings the code reads are set, the ARM JSON
behind the Deploy to Azure button is in step with the Bicep, and property names are ones the
resource providers know."""

from __future__ import annotations

import copy
import json

import pytest
from templates import (
    INFRA,
    Template,
    app_settings,
    arm_template,
    azd_template,
    button_arm,
    button_bicep,
    no_keys_in_app_settings,
    no_secret_outputs,
    parse_bicep,
    resource_types,
    role_assignments_scoped,
    settings_missing,
    storage_locked_down,
    unknown_properties,
)  # fmt: skip

from shared.config import SETTINGS
from shared.config import load as load_config

ALL = {
    "azd (main.bicep)": azd_template,
    "button (azuredeploy.bicep)": button_bicep,
    "button (azuredeploy.json)": button_arm,
}
RULES = [storage_locked_down, no_secret_outputs, no_keys_in_app_settings, role_assignments_scoped]


@pytest.mark.parametrize("path", sorted(INFRA.rglob("*.bicep")), ids=lambda p: str(p.relative_to(INFRA)))
def test_every_bicep_file_parses(path):
    parsed = parse_bicep(path)
    assert parsed.get("resources") or parsed.get("modules"), f"{path.name} declares nothing"


@pytest.mark.parametrize("rule", RULES, ids=lambda r: r.__name__)
@pytest.mark.parametrize("which", ALL)
def test_security_rule_holds(rule, which):
    assert rule(ALL[which]()) == []


@pytest.mark.parametrize("which", ALL)
def test_every_setting_the_code_reads_is_set_by_the_template(which):
    assert settings_missing(ALL[which](), [s.name for s in SETTINGS]) == []


def test_app_settings_agree_between_bicep_and_arm():
    bicep, arm = app_settings(button_bicep()), app_settings(button_arm())
    assert sorted(bicep) == sorted(arm)
    literal = {k: v for k, v in bicep.items() if isinstance(v, str) and not v.startswith("${")}
    for name, value in literal.items():
        # Names from parameters or resources look like literals in pycep's output: skip those.
        computed = ("JOBS_QUEUE_NAME", "JOBS_TABLE_NAME", "JOBS_CONTAINER_NAME", "JOBS_APPINSIGHTS_RESOURCE_ID")
        if name.startswith("JOBS_") and name not in computed:
            assert arm[name] == value, name


def test_defaults_in_templates_match_the_code():
    settings = app_settings(button_arm())
    for s in SETTINGS:
        value = settings[s.name]
        if not value.startswith("["):
            assert value == s.default, f"{s.name}: template {value!r}, code default {s.default!r}"


def test_arm_json_declares_the_same_resources_parameters_and_outputs_as_its_bicep():
    bicep, arm = button_bicep(), button_arm()
    assert resource_types(arm) == resource_types(bicep)
    assert arm.parameters == bicep.parameters
    assert set(arm.outputs) == set(bicep.outputs)


def test_arm_json_carries_the_current_dashboards():
    variables = json.loads((INFRA / "azuredeploy.json").read_text())["variables"]
    assert variables["workbook"] == (INFRA / "dashboards" / "workbook.json").read_text()
    assert variables["alerts"] == json.loads((INFRA / "dashboards" / "alerts.json").read_text())


def test_azd_and_button_deploy_the_same_resources_except_the_code():
    azd = [t for t in resource_types(azd_template()) if t != "Microsoft.Resources/resourceGroups"]
    button = [t for t in resource_types(button_bicep()) if t != "Microsoft.Web/sites/extensions"]
    assert azd == button


def test_azd_outputs_name_the_app_and_no_secret():
    outputs = set(azd_template().outputs)
    assert {"AZURE_FUNCTION_APP_NAME", "FUNCTION_APP_URL", "AZURE_RESOURCE_GROUP", "AZURE_LOCATION"} <= outputs


def test_function_app_is_flex_consumption_python_311_with_user_assigned_identity():
    t = button_arm()
    plan = next(r for r in t.resources if r.type == "Microsoft.Web/serverfarms")
    site = next(r for r in t.resources if r.type == "Microsoft.Web/sites")
    assert plan.config["sku"] == {"name": "FC1", "tier": "FlexConsumption"}
    assert site.properties["functionAppConfig"]["runtime"] == {"name": "python", "version": "3.11"}
    assert site.config["identity"]["type"] == "UserAssigned"
    assert site.properties["httpsOnly"] is True
    storage = site.properties["functionAppConfig"]["deployment"]["storage"]
    assert storage["authentication"]["type"] == "UserAssignedIdentity"


def test_role_assignments_grant_exactly_what_the_app_uses():
    roles = json.loads((INFRA / "azuredeploy.json").read_text())["variables"]["roles"]
    assert sorted(roles.values()) == sorted([
        "b7e6dc6d-f1e8-4753-8033-0f276bb0955b",  # Storage Blob Data Owner
        "974c5e8b-45b9-4653-ba55-5f855dd0fb88",  # Storage Queue Data Contributor
        "0a9a7e1f-b9d0-4cc4-a60d-0319b160aaa3",  # Storage Table Data Contributor
        "3913510d-42f4-4e42-8a64-420c390055eb",  # Monitoring Metrics Publisher
    ])  # fmt: skip
    assert "b24988ac-6180-42a0-ab88-20f7382dd24c" not in (INFRA / "azuredeploy.json").read_text()  # Contributor


def test_template_creates_the_queues_table_and_containers_the_app_uses():
    variables = json.loads((INFRA / "azuredeploy.json").read_text())["variables"]
    # Every priority's queue and its poison queue, named as shared/config.py and the triggers name them.
    config = load_config({})
    queues = [config.queue_name_for(p) for p in ("normal", "high", "low")]
    assert variables["queues"] == [name for q in queues for name in (q, f"{q}-poison")]
    assert variables["tables"] == ["jobs"]
    assert set(variables["containers"]) == {"app-package", "job-payloads"}


# --- property names known to the resource providers (azure-mgmt-* models) ---------------------


def _models():
    from azure.mgmt.applicationinsights.v2020_02_02.models import ApplicationInsightsComponent
    from azure.mgmt.applicationinsights.v2023_06_01.models import Workbook
    from azure.mgmt.authorization.v2022_04_01.models import RoleAssignmentCreateParameters
    from azure.mgmt.loganalytics.models import Workspace
    from azure.mgmt.monitor.models import ActionGroupResource, ScheduledQueryRuleResource
    from azure.mgmt.msi.models import Identity
    from azure.mgmt.storage.models import BlobContainer, StorageAccountCreateParameters
    from azure.mgmt.web.models import AppServicePlan, Site

    return {
        "Microsoft.Storage/storageAccounts": StorageAccountCreateParameters,
        "Microsoft.Storage/storageAccounts/blobServices/containers": BlobContainer,
        "Microsoft.Web/sites": Site,
        "Microsoft.Web/serverfarms": AppServicePlan,
        "Microsoft.Insights/components": ApplicationInsightsComponent,
        "Microsoft.Insights/workbooks": Workbook,
        "Microsoft.OperationalInsights/workspaces": Workspace,
        "Microsoft.Authorization/roleAssignments": RoleAssignmentCreateParameters,
        "Microsoft.Insights/actionGroups": ActionGroupResource,
        "Microsoft.Insights/scheduledQueryRules": ScheduledQueryRuleResource,
        "Microsoft.ManagedIdentity/userAssignedIdentities": Identity,
    }


@pytest.mark.parametrize("which", ["button (azuredeploy.json)", "azd (main.bicep)"])
def test_resource_properties_are_names_the_provider_knows(which):
    models = _models()
    problems = []
    for r in ALL[which]().resources:
        model = models.get(r.type)
        if model is None or r.existing:
            continue
        body = {"properties": r.properties} if r.properties else {}
        body.update({k: v for k, v in r.config.items() if k in ("kind", "sku", "identity", "location", "tags")})
        problems += [f"{r.type}: {p}" for p in unknown_properties(model, body)]
    assert problems == []


def test_property_check_catches_a_misspelt_property():
    from azure.mgmt.storage.models import StorageAccountCreateParameters

    assert unknown_properties(StorageAccountCreateParameters, {"properties": {"allowSharedKeyAcces": False}}) == [
        "properties.allowSharedKeyAcces"
    ]


# --- each security rule fails on a template that breaks it ------------------------------------


def _mutated(change) -> Template:
    t = copy.deepcopy(button_arm())
    change(t)
    return t


def _storage(t):
    return next(r for r in t.resources if r.type == "Microsoft.Storage/storageAccounts")


def _settings(t):
    return next(r for r in t.resources if r.type == "Microsoft.Web/sites/config").properties


def _scope_roles_to_subscription(t):
    for r in t.resources:
        if r.type == "Microsoft.Authorization/roleAssignments":
            r.scope, r.scope_type = "[subscription().id]", None


KEY_OUTPUT = {"type": "string", "value": "[listKeys('x', '1').keys[0].value]"}
CONNECTION_OUTPUT = {"type": "string", "value": "[reference('x').ConnectionString]"}
STORAGE_CONNECTION = "DefaultEndpointsProtocol=https;AccountKey=abc"

BREAKS = {
    "shared-key-on": (storage_locked_down, lambda t: _storage(t).properties.update(allowSharedKeyAccess=True),
                      "allowSharedKeyAccess"),
    "tls-1.0": (storage_locked_down, lambda t: _storage(t).properties.update(minimumTlsVersion="TLS1_0"),
                "minimumTlsVersion"),
    "http-allowed": (storage_locked_down, lambda t: _storage(t).properties.pop("supportsHttpsTrafficOnly"),
                     "supportsHttpsTrafficOnly"),
    "public-blobs": (storage_locked_down, lambda t: _storage(t).properties.update(allowBlobPublicAccess=True),
                     "allowBlobPublicAccess"),
    "key-output": (no_secret_outputs, lambda t: t.outputs.update(STORAGE_KEY=KEY_OUTPUT), "STORAGE_KEY"),
    "connection-string-output": (no_secret_outputs, lambda t: t.outputs.update(conn=CONNECTION_OUTPUT), "conn"),
    "storage-connection-string": (no_keys_in_app_settings,
                                  lambda t: _settings(t).update(AzureWebJobsStorage=STORAGE_CONNECTION),
                                  "AzureWebJobsStorage"),
    "other-connection-string": (no_keys_in_app_settings, lambda t: _settings(t).update(DB_CONNECTION_STRING="x"),
                                "DB_CONNECTION_STRING"),
    "no-identity-credential": (no_keys_in_app_settings, lambda t: _settings(t).pop("AzureWebJobsStorage__credential"),
                               "__credential"),
    "listkeys": (no_keys_in_app_settings, lambda t: setattr(t, "text", t.text + "[listKeys(resourceId('x'), '1')]"),
                 "listKeys"),
    "subscription-scope": (role_assignments_scoped, _scope_roles_to_subscription, "scoped to"),
}  # fmt: skip


@pytest.mark.parametrize("broken", BREAKS)
def test_rule_fails_on_a_template_that_breaks_it(broken):
    rule, change, message = BREAKS[broken]
    assert rule(button_arm()) == []
    problems = rule(_mutated(change))
    assert any(message in p for p in problems), problems


def test_role_assignment_scope_is_read_from_the_bicep_too():
    t = copy.deepcopy(azd_template())
    for r in t.resources:
        if r.type == "Microsoft.Authorization/roleAssignments":
            r.scope, r.scope_type = None, None  # as if `scope:` were left out (the resource group)
    assert role_assignments_scoped(t)


def test_settings_rule_fails_when_a_setting_is_dropped():
    def drop(t):
        _settings(t).pop("JOBS_LEASE_SECONDS")

    assert settings_missing(_mutated(drop), [s.name for s in SETTINGS]) == [
        "app setting JOBS_LEASE_SECONDS is read by the code but not set by the template"
    ]


def test_sync_check_fails_when_the_arm_json_falls_behind(tmp_path):
    data = json.loads((INFRA / "azuredeploy.json").read_text())
    data["resources"] = [r for r in data["resources"] if r["type"] != "Microsoft.Insights/workbooks"]
    data["parameters"].pop("alertEmail")
    stale = tmp_path / "azuredeploy.json"
    stale.write_text(json.dumps(data))
    t = arm_template(stale)
    assert resource_types(t) != resource_types(button_bicep())
    assert t.parameters != button_bicep().parameters


def test_property_check_reaches_nested_site_settings():
    from azure.mgmt.web.models import Site

    body = {"properties": {"functionAppConfig": {"runtime": {"name": "python", "versoin": "3.11"}}}}
    assert unknown_properties(Site, body) == ["properties.functionAppConfig.runtime.versoin"]


def test_package_holds_the_app_alone():
    from tools.package import files

    included = files()
    assert {"function_app.py", "host.json", "requirements.txt", "shared/worker.py"} <= set(included)
    # Swagger UI's page is ours; its files come from swagger-ui-py, which the remote build installs.
    assert {"shared/apidocs/page.html", "shared/apidocs/init.js"} <= set(included)
    assert {f"shared/dashboard/{name}" for name in ("index.html", "main.js", "dashboard.css")} <= set(included)
    assert "swagger-ui-py==" in (INFRA.parent / "requirements.txt").read_text()
    assert all(p == "function_app.py" or p.startswith("shared/") or p in ("host.json", "requirements.txt")
               for p in included), included  # fmt: skip


def test_armcheck_compares_what_templates_declare(tmp_path):
    from tools import armcheck

    committed = INFRA / "azuredeploy.json"
    assert armcheck.main(["armcheck", str(committed), str(committed)]) == 0
    data = json.loads(committed.read_text())
    data["outputs"].pop("FUNCTION_APP_URL")
    stale = tmp_path / "stale.json"
    stale.write_text(json.dumps(data))
    assert armcheck.main(["armcheck", str(committed), str(stale)]) == 1
