"""Chromium for the browser tests: where it is, how to install it, how Playwright launches it.

Playwright drives the distribution's Chromium rather than the build `playwright install`
downloads from Microsoft's CDN (unreachable on many CI machines). `make test` runs
`python -m tools.chromium` first, which installs Debian's package when it is missing and we are
root; the tests' `browser` fixture (tests/conftest.py) uses `find()` and `LAUNCH_ARGS`.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

DEBIAN_CHROMIUM = Path("/usr/lib/chromium/chromium")  # the binary; /usr/bin/chromium is a wrapper script
ENV_VARIABLE = "CHROMIUM_PATH"  # another Chromium or Chrome binary to use instead
INSTALL_COMMAND = ["apt-get", "install", "-y", "--no-install-recommends", "chromium"]
HOW_TO_INSTALL = (
    "install Debian's Chromium (as root: apt-get update && apt-get install -y --no-install-recommends chromium), "
    f"or set {ENV_VARIABLE} to a Chromium or Chrome binary"
)
# Keep the browser off the network: no update checks, component downloads, sync or first-run
# pages (Playwright adds --no-sandbox when running as root, and its own automation flags).
LAUNCH_ARGS = [
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--no-first-run",
    "--disable-default-apps",
    "--disable-domain-reliability",
    "--metrics-recording-only",
]


def find() -> Path | None:
    """The Chromium binary to launch, or None."""
    explicit = os.environ.get(ENV_VARIABLE)
    if explicit:
        return Path(explicit) if os.access(explicit, os.X_OK) else None
    if os.access(DEBIAN_CHROMIUM, os.X_OK):
        return DEBIAN_CHROMIUM
    for name in ("google-chrome", "google-chrome-stable"):
        found = shutil.which(name)
        if found:
            return Path(found)
    return None


def can_install() -> bool:
    """As root with apt-get, unless CHROMIUM_PATH names a browser: that choice is not overridden."""
    if os.environ.get(ENV_VARIABLE):
        return False
    return hasattr(os, "geteuid") and os.geteuid() == 0 and shutil.which("apt-get") is not None


def missing_reason() -> str:
    """Why there is no Chromium to use, and what to do about it."""
    explicit = os.environ.get(ENV_VARIABLE)
    if explicit:
        return f"{ENV_VARIABLE}={explicit} is not an executable file"
    return f"Chromium is not installed; {HOW_TO_INSTALL}"


def install() -> Path:
    """Install Debian's Chromium with apt-get (root only). Raises if that fails."""
    env = {**os.environ, "DEBIAN_FRONTEND": "noninteractive"}
    subprocess.run(["apt-get", "update", "-qq"], check=True, env=env)
    subprocess.run([*INSTALL_COMMAND, "-qq"], check=True, env=env)
    if not os.access(DEBIAN_CHROMIUM, os.X_OK):
        raise RuntimeError(f"apt-get installed chromium but {DEBIAN_CHROMIUM} is not there")
    return DEBIAN_CHROMIUM


def main() -> int:
    """`make browser`: make sure Chromium is there. Exit 0 when it is (or cannot be installed by
    us, with a message: the browser tests then skip and say why); 1 when the install failed."""
    found = find()
    if found is not None:
        return 0
    if not can_install():
        print(f"NOTE: the browser tests will be skipped: {missing_reason()}.")
        return 0
    print("Installing Debian's Chromium for the browser tests (apt-get, about 440 MB)...", flush=True)
    try:
        print(f"Chromium installed: {install()}")
    except (subprocess.CalledProcessError, RuntimeError) as exc:
        print(f"ERROR: could not install Chromium: {exc}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
