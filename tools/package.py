"""Zip the function app as it is deployed: the tracked files that .funcignore does not exclude.

python tools/package.py app.zip
"""

from __future__ import annotations

import argparse
import fnmatch
import subprocess
import sys
import zipfile
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent


def ignore_patterns() -> list[str]:
    lines = (ROOT / ".funcignore").read_text().splitlines()
    return [line.strip() for line in lines if line.strip() and not line.startswith("#")]


def ignored(path: str, patterns: list[str]) -> bool:
    parts = path.split("/")
    for pattern in patterns:
        if pattern.endswith("/"):
            if pattern.rstrip("/") in parts[:-1] or any(fnmatch.fnmatch(p, pattern.rstrip("/")) for p in parts[:-1]):
                return True
        elif fnmatch.fnmatch(path, pattern) or fnmatch.fnmatch(parts[-1], pattern):
            return True
    return False


def files() -> list[str]:
    tracked = subprocess.run(["git", "ls-files"], cwd=ROOT, capture_output=True, text=True, check=True).stdout
    patterns = ignore_patterns()
    return sorted(p for p in tracked.splitlines() if not ignored(p, patterns))


def main(argv: list[str]) -> int:
    parser = argparse.ArgumentParser(prog="python tools/package.py", description=__doc__.splitlines()[0])
    parser.add_argument("out", nargs="?", default="app.zip", type=Path, help="the zip to write (default: app.zip)")
    out = parser.parse_args(argv[1:]).out
    included = files()
    with zipfile.ZipFile(out, "w", zipfile.ZIP_DEFLATED) as zf:
        for name in included:
            zf.write(ROOT / name, name)
    print(f"{out}: {len(included)} files, {out.stat().st_size:,} bytes")
    for name in included:
        print(f"  {name}")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv))
