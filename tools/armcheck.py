"""Compare two ARM templates by what they declare: resource types (nested deployments followed,
`existing` references left out), parameter names and output names. Standard library only, so the
Bicep workflow can run it right after `az bicep build`.

    python tools/armcheck.py compiled.json infra/azuredeploy.json
"""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Any


def resource_types(template: dict[str, Any]) -> list[str]:
    found: list[str] = []
    resources = template.get("resources", [])
    items = resources.values() if isinstance(resources, dict) else resources  # languageVersion 2.0 uses a map
    for res in items:
        if res.get("existing"):
            continue
        if res["type"] == "Microsoft.Resources/deployments":
            found += resource_types(res["properties"]["template"])
        else:
            found.append(res["type"])
    return sorted(found)


def declared(template: dict[str, Any]) -> dict[str, Any]:
    return {
        "resources": resource_types(template),
        "parameters": sorted(template.get("parameters", {})),
        "outputs": sorted(template.get("outputs", {})),
    }


def main(argv: list[str]) -> int:
    compiled, committed = (declared(json.loads(Path(p).read_text())) for p in argv[1:3])
    differences = [k for k in compiled if compiled[k] != committed[k]]
    for key in differences:
        print(f"{key} differ:\n  compiled:  {compiled[key]}\n  committed: {committed[key]}")
    if differences:
        print("infra/azuredeploy.json is stale: bring it in step with infra/azuredeploy.bicep", file=sys.stderr)
    return 1 if differences else 0


if __name__ == "__main__":
    sys.exit(main(sys.argv))
