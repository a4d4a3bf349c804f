"""Where a bench's figures go: printed, and written as JSON when asked."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any


def report(result: dict[str, Any], out: str | None) -> None:
    print(json.dumps(result, indent=2))
    if out:
        path = Path(out)
        path.parent.mkdir(parents=True, exist_ok=True)  # bench/out/ is not in a fresh clone
        path.write_text(json.dumps(result, indent=2))
