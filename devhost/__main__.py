"""python -m devhost [--app-dir DIR] [--port 7071] [--settings FILE] [--instances N [--restart]]"""

from __future__ import annotations

import argparse
import asyncio
import logging
import os
import sys
from pathlib import Path


def main() -> int:
    parser = argparse.ArgumentParser(prog="python -m devhost", description="Run an Azure Functions Python app locally.")
    parser.add_argument("--app-dir", default=".", help="folder with function_app.py and host.json")
    parser.add_argument("--port", type=int, default=7071)
    parser.add_argument("--settings", default=None, help="local.settings.json (default: in the app folder)")
    parser.add_argument("--instances", type=int, default=1, help="host processes on the same storage")
    parser.add_argument("--restart", action="store_true", help="with --instances: restart an instance that dies")
    parser.add_argument("--instance", type=int, default=None, help=argparse.SUPPRESS)
    args = parser.parse_args()
    app_dir = Path(args.app_dir).resolve()
    settings = Path(args.settings).resolve() if args.settings else app_dir / "local.settings.json"
    if args.instances > 1 and args.instance is None:
        from devhost.supervisor import supervise

        passed = ["--app-dir", str(app_dir), "--port", str(args.port), "--settings", str(settings)]
        return supervise(passed, args.instances, args.restart)

    instance = args.instance if args.instance is not None else int(os.environ.get("DEVHOST_INSTANCE", "0"))
    logging.basicConfig(
        level=logging.INFO, stream=sys.stdout,
        format=f"%(asctime)s [{instance}] %(levelname)s %(name)s: %(message)s",
    )  # fmt: skip
    from devhost.host import serve

    return asyncio.run(serve(app_dir, args.port, settings, instance))


if __name__ == "__main__":
    sys.exit(main())
