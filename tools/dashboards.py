"""Generate the Application Insights workbook and the alert queries from shared/signals.py.

    python -m tools.dashboards          # rewrite infra/dashboards/*.json and infra/azuredeploy.json
    python -m tools.dashboards --check  # exit 1 if the committed files are stale (run by the tests)

The Bicep loads both files (loadTextContent / loadJsonContent) and the button's ARM JSON carries
them as variables, so the dashboards, the alerts and the code share one set of names. Queries
use the Application Insights schema: counters and gauges land in `customMetrics`, the attempt
span (a consumer span) in `requests`, logs in `traces`; attributes are `customDimensions`.
Counts of spans and logs sum `itemCount`, so they stay right when traces are sampled.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path
from typing import Any

from shared import signals as s

OUT = Path(__file__).resolve().parent.parent / "infra" / "dashboards"
ARM = OUT.parent / "azuredeploy.json"


def _names(*metrics: s.Metric) -> str:
    return ", ".join(f'"{m.name}"' for m in metrics)


def _dim(name: str) -> str:
    return f"tostring(customDimensions.{name})"


ATTEMPTS = f'requests | where name == "{s.SPAN_ATTEMPT}"'

PANELS: list[tuple[str, str, str]] = [
    (
        "Throughput (jobs per 5 minutes)",
        f"customMetrics | where name in ({_names(s.SUBMITTED, s.SUCCEEDED, s.RETRIED, s.DEAD_LETTERED, s.CANCELLED)})"
        " | summarize jobs = sum(valueSum) by name, bin(timestamp, 5m)",
        "timechart",
    ),
    (
        "Success rate by job type (%)",
        f"customMetrics | where name in ({_names(s.SUCCEEDED, s.DEAD_LETTERED)})"
        f" | extend job_type = {_dim(s.JOB_TYPE)}"
        f' | summarize ok = sumif(valueSum, name == "{s.SUCCEEDED.name}"),'
        f' dead = sumif(valueSum, name == "{s.DEAD_LETTERED.name}") by job_type, bin(timestamp, 15m)'
        " | extend success_rate = round(100.0 * ok / (ok + dead), 2) | project timestamp, job_type, success_rate",
        "timechart",
    ),
    (
        "Attempt duration by job type (ms): p50, p95, p99",
        f"{ATTEMPTS} | extend job_type = {_dim(s.JOB_TYPE)}"
        " | summarize p50 = percentile(duration, 50), p95 = percentile(duration, 95),"
        " p99 = percentile(duration, 99), attempts = sum(itemCount) by job_type",
        "table",
    ),
    (
        "Queue wait by job type (ms, due to claim): p50, p95, p99",
        f"{ATTEMPTS} | extend job_type = {_dim(s.JOB_TYPE)}, wait = todouble(customDimensions.{s.QUEUE_WAIT_MS})"
        " | where isnotnull(wait)"
        " | summarize p50 = percentile(wait, 50), p95 = percentile(wait, 95), p99 = percentile(wait, 99) by job_type",
        "table",
    ),
    (
        "Queue and poison-queue depth",
        f"customMetrics | where name in ({_names(s.QUEUE_DEPTH, s.POISON_DEPTH)})"
        " | summarize depth = max(valueMax) by name, bin(timestamp, 5m)",
        "timechart",
    ),
    (
        "Dead letters with their last error",
        f'traces | where message has "dead-lettered" and isnotempty(customDimensions.{s.JOB_ID})'
        f" | project timestamp, job_id = {_dim(s.JOB_ID)}, job_type = {_dim(s.JOB_TYPE)},"
        f" attempt = {_dim(s.ATTEMPT)}, error = message | order by timestamp desc | take 100",
        "table",
    ),
    (
        "Top errors",
        f"traces | where severityLevel >= 2 and isnotempty(customDimensions.{s.JOB_ID})"
        ' | extend error = extract(@"^[^:]+: (.*)$", 1, message)'
        f" | summarize failures = sum(itemCount), jobs = dcount({_dim(s.JOB_ID)}) by error | top 10 by failures",
        "table",
    ),
]

# Alerts: each query returns one number per evaluation; the Bicep compares it to a threshold.
ALERTS: dict[str, dict[str, Any]] = {
    "deadLetters": {
        "description": "Jobs were dead-lettered",
        "query": f'customMetrics | where name == "{s.DEAD_LETTERED.name}" | summarize value = sum(valueSum)',
        "operator": "GreaterThan",
        "threshold": 0,
        "severity": 2,
    },
    "queueDepth": {
        "description": "The jobs queue is deeper than the threshold",
        "query": f'customMetrics | where name == "{s.QUEUE_DEPTH.name}" | summarize value = max(valueMax)',
        "operator": "GreaterThan",
        "threshold": 1000,
        "severity": 3,
    },
    "queueAge": {
        "description": "Jobs wait too long between due and claim (p95, ms)",
        "query": f"{ATTEMPTS} | summarize value = percentile(todouble(customDimensions.{s.QUEUE_WAIT_MS}), 95)",
        "operator": "GreaterThan",
        "threshold": 300000,
        "severity": 3,
    },
    "failureRate": {
        "description": "More than the threshold percentage of attempts fail",
        "query": f"{ATTEMPTS} | summarize value = 100.0 * countif(tostring(customDimensions.{s.OUTCOME})"
        ' in ("retry_scheduled", "dead_lettered")) / count()',
        "operator": "GreaterThan",
        "threshold": 20,
        "severity": 3,
    },
}


def workbook() -> dict[str, Any]:
    items: list[dict[str, Any]] = [
        {
            "type": 1,
            "name": "title",
            "content": {"json": "## Jobs\nThroughput, failures and latency of the job system."},
        }
    ]
    for index, (title, query, visualization) in enumerate(PANELS):
        items.append(
            {
                "type": 3,
                "name": f"panel-{index}",
                "content": {
                    "version": "KqlItem/1.0",
                    "title": title,
                    "query": query,
                    "size": 0,
                    "timeContext": {"durationMs": 86400000},
                    "queryType": 0,
                    "resourceType": "microsoft.insights/components",
                    "visualization": visualization,
                },
            }
        )
    return {
        "version": "Notebook/1.0",
        "items": items,
        "fallbackResourceIds": [],
        "$schema": "https://github.com/Microsoft/Application-Insights-Workbooks/blob/master/schema/workbook.json",
    }


def render() -> dict[Path, str]:
    """The generated files: the two the Bicep loads, and the ARM JSON of the Deploy to Azure
    button, which carries the same two as variables (ARM has no loadTextContent)."""
    workbook_text = json.dumps(workbook(), indent=2) + "\n"
    arm = json.loads(ARM.read_text())
    arm["variables"]["workbook"] = workbook_text
    arm["variables"]["alerts"] = ALERTS
    return {
        OUT / "workbook.json": workbook_text,
        OUT / "alerts.json": json.dumps(ALERTS, indent=2) + "\n",
        ARM: json.dumps(arm, indent=2) + "\n",
    }


def queries() -> list[str]:
    """Every query the dashboards and alerts run."""
    return [q for _, q, _ in PANELS] + [a["query"] for a in ALERTS.values()]


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--check", action="store_true", help="fail if the committed files are stale")
    args = parser.parse_args()
    stale = []
    for path, text in render().items():
        if args.check:
            if not path.exists() or path.read_text() != text:
                stale.append(str(path))
        else:
            OUT.mkdir(parents=True, exist_ok=True)
            path.write_text(text)
    if stale:
        print("stale, run `python -m tools.dashboards`: " + ", ".join(stale), file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
