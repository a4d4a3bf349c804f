"""python -m devhost [--app-dir DIR] [--port 7071] [--settings FILE] [--instances N [--restart]]"""

from __future__ import annotations

import argparse
import asyncio
import logging
import os
import sys
from pathlib import Path


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="python -m devhost", description="Run an Azure Functions Python app locally.")
    parser.add_argument("--app-dir", default=".", help="folder with function_app.py and host.json (default: .)")
    parser.add_argument("--port", type=int, default=None,
                        help="HTTP port (default: local.settings.json Host.LocalHttpPort, else 7071)")  # fmt: skip
    parser.add_argument("--settings", default=None, help="settings file (default: local.settings.json in the app dir)")
    parser.add_argument("--instances", type=int, default=1, help="host processes on the same storage and port")
    parser.add_argument("--restart", action="store_true", help="restart an instance that dies (with --instances)")
    parser.add_argument("--function-key", default=None,
                        help="require this key on non-anonymous HTTP functions, as in Azure")  # fmt: skip
    parser.add_argument("--instance", type=int, default=None, help=argparse.SUPPRESS)  # set by the supervisor
    args = parser.parse_args(argv)
    if args.instances < 1:
        parser.error("--instances must be at least 1")
    return args


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    app_dir = Path(args.app_dir).resolve()
    if args.function_key:  # in the environment, so the supervisor's instances get it too
        os.environ["DEVHOST_FUNCTION_KEY"] = args.function_key  # http_server.FUNCTION_KEY_VARIABLE
    settings = Path(args.settings).resolve() if args.settings else app_dir / "local.settings.json"
    if args.instance is None and (args.instances > 1 or args.restart):
        from devhost.supervisor import supervise

        host_args = ["--app-dir", str(app_dir), "--settings", str(settings)]
        if args.port is not None:
            host_args += ["--port", str(args.port)]
        return supervise(host_args, args.instances, args.restart)

    instance = args.instance if args.instance is not None else int(os.environ.get("DEVHOST_INSTANCE") or 0)
    os.environ["DEVHOST_INSTANCE"] = str(instance)
    sys.stdout.reconfigure(line_buffering=True)  # type: ignore[union-attr] - print() from functions shows at once
    from devhost.logs import ExtrasFormatter

    handler = logging.StreamHandler(sys.stdout)
    handler.setFormatter(ExtrasFormatter(f"%(asctime)s [{instance}] %(levelname)s %(name)s: %(message)s"))
    logging.basicConfig(level=logging.INFO, handlers=[handler])
    logging.captureWarnings(True)
    from devhost.host import HostOptions, serve

    options = HostOptions(app_dir, settings, args.port, instance, reuse_port=args.instance is not None)
    return asyncio.run(serve(options))


if __name__ == "__main__":
    sys.exit(main())
