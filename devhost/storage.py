"""Connection settings as the host reads them."""

from __future__ import annotations

import os


def connection_string(setting: str) -> str:
    """The connection string in app setting `setting` (the SDKs accept UseDevelopmentStorage=true)."""
    value = os.environ.get(setting)
    if not value:
        raise KeyError(f"connection setting {setting!r} is not set")
    return value
