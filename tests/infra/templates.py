"""Reading the infrastructure offline: Bicep through pycep-parser (following local modules), ARM
JSON as it is (following nested deployments), both into one shape the rules can check.

No Bicep compiler or Azure CLI runs here, so these rules are what catches the mistakes people
make: a key in an app setting, shared-key access left on, a role assigned at the wrong scope, a
setting the code reads that no template sets, an ARM template that fell behind its Bicep.
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass, field
from functools import cache
from pathlib import Path
from typing import Any

from pycep import BicepParser

from tools.azurite import REPO_ROOT

INFRA = REPO_ROOT / "infra"

STORAGE = "Microsoft.Storage/storageAccounts"
INSIGHTS = "Microsoft.Insights/components"
ROLE_ASSIGNMENT = "Microsoft.Authorization/roleAssignments"
APP_SETTINGS = "Microsoft.Web/sites/config"
# The one setting allowed to be called a connection string: it names the Application Insights
# resource, and with local auth disabled it cannot send telemetry without the app's identity.
TELEMETRY_CONNECTION = "APPLICATIONINSIGHTS_CONNECTION_STRING"
SECRET_WORDS = re.compile(r"key|secret|password|connectionstring|sas|token", re.IGNORECASE)
SECRET_CALLS = re.compile(r"list[A-Z]?\w*[Kk]eys|listAccountSas|listServiceSas|AccountKey=|SharedAccessSignature")


@dataclass
class Resource:
    type: str
    name: Any
    properties: dict[str, Any]
    scope: Any = None  # Bicep: the symbol it is scoped to; ARM: the scope expression
    scope_type: str | None = None  # the resource type the scope refers to, when known
    existing: bool = False
    config: dict[str, Any] = field(default_factory=dict)  # everything else: kind, sku, identity...
    source: str = ""


@dataclass
class Template:
    resources: list[Resource]
    parameters: set[str]
    outputs: dict[str, Any]
    text: str  # all source text, for the rules that read it whole


@cache
def parse_bicep(path: Path) -> dict[str, Any]:
    return BicepParser().parse(text=path.read_text())


def bicep_template(entry: Path) -> Template:
    parsed = parse_bicep(entry)
    resources: list[Resource] = []
    texts = [entry.read_text()]
    _collect_bicep(entry, resources, texts)
    return Template(resources, set(parsed.get("parameters", {})), dict(parsed.get("outputs", {})), "\n".join(texts))


def _collect_bicep(path: Path, resources: list[Resource], texts: list[str]) -> None:
    parsed = parse_bicep(path)
    symbols = {name: r["type"] for name, r in parsed.get("resources", {}).items()}
    for res in parsed.get("resources", {}).values():
        config = res["config"]
        if "loop_type" in config or "condition" in config and "config" in config:
            config = config["config"]  # a loop or a condition wraps the body
        scope = config.get("scope")
        resources.append(
            Resource(
                type=res["type"],
                name=config.get("name"),
                properties=config.get("properties") or {},
                scope=scope,
                scope_type=symbols.get(scope) if isinstance(scope, str) else None,
                existing=bool(res.get("existing")),
                config={k: v for k, v in config.items() if k not in ("name", "properties", "scope")},
                source=str(path.relative_to(INFRA)),
            )
        )
    for module in parsed.get("modules", {}).values():
        if module["type"] == "local":
            child = (path.parent / module["detail"]["path"]).resolve()
            texts.append(child.read_text())
            _collect_bicep(child, resources, texts)


def arm_template(path: Path) -> Template:
    data = json.loads(path.read_text())
    resources: list[Resource] = []
    _collect_arm(data, resources, path.name)
    return Template(resources, set(data.get("parameters", {})), dict(data.get("outputs", {})), path.read_text())


def _collect_arm(template: dict[str, Any], resources: list[Resource], source: str) -> None:
    for res in template.get("resources", []):
        if res["type"] == "Microsoft.Resources/deployments":
            _collect_arm(res["properties"]["template"], resources, source)
            continue
        scope = res.get("scope")
        scope_type = None
        if isinstance(scope, str):
            for known in (STORAGE, INSIGHTS):
                if f"'{known}'" in scope:
                    scope_type = known
        resources.append(
            Resource(
                type=res["type"],
                name=res.get("name"),
                properties=res.get("properties") or {},
                scope=scope,
                scope_type=scope_type,
                existing=bool(res.get("existing")),
                config={k: v for k, v in res.items() if k not in ("type", "name", "properties", "scope")},
                source=source,
            )
        )


def azd_template() -> Template:
    return bicep_template(INFRA / "main.bicep")


def button_bicep() -> Template:
    return bicep_template(INFRA / "azuredeploy.bicep")


def button_arm() -> Template:
    return arm_template(INFRA / "azuredeploy.json")


# --- the rules: each returns what is wrong, empty when the template holds ----------------------


def storage_locked_down(t: Template) -> list[str]:
    wanted = {
        "allowSharedKeyAccess": False,
        "allowBlobPublicAccess": False,
        "minimumTlsVersion": "TLS1_2",
        "supportsHttpsTrafficOnly": True,
    }
    problems = []
    accounts = [r for r in t.resources if r.type == STORAGE and not r.existing]
    if not accounts:
        problems.append("no storage account declared")
    for r in accounts:
        for name, value in wanted.items():
            if r.properties.get(name) != value:
                problems.append(f"{r.source}: storage account {name} is {r.properties.get(name)!r}, must be {value!r}")
    for r in t.resources:
        if r.type.endswith("blobServices/containers") and r.properties.get("publicAccess", "None") != "None":
            problems.append(f"{r.source}: container has public access {r.properties.get('publicAccess')!r}")
    return problems


def no_secret_outputs(t: Template) -> list[str]:
    problems = []
    for name, output in t.outputs.items():
        text = json.dumps(output)
        if SECRET_WORDS.search(name) or SECRET_CALLS.search(text) or "ConnectionString" in text:
            problems.append(f"output {name} may carry a secret")
        if any(d.get("type") == "secure" for d in output.get("decorators", [])) or output.get("type") == "securestring":
            problems.append(f"output {name} is secure: outputs are visible in the deployment history")
    return problems


def app_settings(t: Template) -> dict[str, Any]:
    settings: dict[str, Any] = {}
    for r in t.resources:
        if r.type == APP_SETTINGS:
            settings.update(r.properties)
        if r.type == "Microsoft.Web/sites":
            for item in r.properties.get("siteConfig", {}).get("appSettings", []) or []:
                settings[item["name"]] = item.get("value")
    return settings


def no_keys_in_app_settings(t: Template) -> list[str]:
    problems = []
    settings = app_settings(t)
    for name, value in settings.items():
        text = json.dumps(value)
        if name == "AzureWebJobsStorage" or (
            name.upper().endswith("CONNECTION_STRING") and name != TELEMETRY_CONNECTION
        ):
            problems.append(f"app setting {name} is a connection string: use identity-based settings")
        if SECRET_CALLS.search(text) or "DefaultEndpointsProtocol" in text:
            problems.append(f"app setting {name} holds a key")
    expected = {"AzureWebJobsStorage__accountName": None, "AzureWebJobsStorage__credential": "managedidentity",
                "AzureWebJobsStorage__clientId": None}  # fmt: skip
    for name, value in expected.items():
        if name not in settings:
            problems.append(f"app setting {name} is missing: storage must be identity-based")
        elif value is not None and settings[name] != value:
            problems.append(f"app setting {name} is {settings[name]!r}, must be {value!r}")
    if SECRET_CALLS.search(t.text):
        problems.append("the template reads a key (listKeys or similar)")
    return problems


def role_assignments_scoped(t: Template) -> list[str]:
    problems = []
    assignments = [r for r in t.resources if r.type == ROLE_ASSIGNMENT]
    if not assignments:
        problems.append("no role assignments")
    for r in assignments:
        if r.scope_type not in (STORAGE, INSIGHTS):
            problems.append(f"{r.source}: role assignment scoped to {r.scope!r}, not to the resource it is for")
    return problems


def settings_missing(t: Template, names: list[str]) -> list[str]:
    settings = app_settings(t)
    return [f"app setting {n} is read by the code but not set by the template" for n in names if n not in settings]


def resource_types(t: Template) -> list[str]:
    return sorted(r.type for r in t.resources if not r.existing)


# --- property names the resource providers know ------------------------------------------------


def _model_fields(model: type) -> dict[str, type | None]:
    """REST property name -> nested model class (or None), for both styles of azure-mgmt models."""
    if hasattr(model, "_attribute_map"):  # msrest style: keys like 'properties.principalId'
        import sys

        module = sys.modules[model.__module__]
        fields: dict[str, Any] = {}
        for attr in model._attribute_map.values():
            parts = [p.replace("\\.", ".") for p in re.split(r"(?<!\\)\.", attr["key"])]
            node = fields
            for part in parts[:-1]:
                node = node.setdefault(part, {})
            nested = getattr(module, attr["type"], None) if isinstance(attr["type"], str) else None
            node[parts[-1]] = nested if isinstance(nested, type) else None
        return fields
    model()  # typespec style: the rest names are filled in on first use
    out: dict[str, type | None] = {}
    for f in model._attr_to_rest_field.values():  # type: ignore[attr-defined]
        nested = getattr(f, "_class_type", None)
        out[f._rest_name] = nested if isinstance(nested, type) and getattr(f, "_is_model", False) else None
    return out


def unknown_properties(model: type, value: dict[str, Any], path: str = "") -> list[str]:
    fields = _model_fields(model)
    problems = []
    for key, item in value.items():
        known = fields.get(key, ...) if isinstance(fields, dict) else ...
        if key not in fields:
            problems.append(f"{path}{key}")
            continue
        if isinstance(item, dict) and not _is_expression(item):
            if isinstance(known, dict):  # a flattened msrest branch
                problems += [f"{path}{key}.{p}" for p in _unknown_in_tree(known, item)]
            elif isinstance(known, type):
                problems += unknown_properties(known, item, f"{path}{key}.")
    return problems


def _unknown_in_tree(tree: dict[str, Any], value: dict[str, Any]) -> list[str]:
    out = []
    for key, item in value.items():
        if key not in tree:
            out.append(key)
        elif isinstance(tree[key], dict) and isinstance(item, dict) and not _is_expression(item):
            out += [f"{key}.{p}" for p in _unknown_in_tree(tree[key], item)]
    return out


def _is_expression(value: dict[str, Any]) -> bool:
    return len(value) == 1 and next(iter(value)) in ("operator", "function", "interpolation")
