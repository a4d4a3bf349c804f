"""Fixtures shared by every test: a real Azurite, started once per session on free ports, in memory."""

from __future__ import annotations

import os
import uuid
from collections.abc import Iterator

import pytest

from tools.azurite import Azurite


@pytest.fixture(scope="session")
def azurite() -> Iterator[Azurite]:
    with Azurite() as instance:
        yield instance


@pytest.fixture
def unique_name() -> str:
    """A fresh lowercase name for a queue, table or container, so tests never share state."""
    return "t" + uuid.uuid4().hex[:16]


@pytest.fixture
def storage_env(azurite: Azurite, monkeypatch: pytest.MonkeyPatch) -> dict[str, str]:
    """Point AzureWebJobsStorage at the test Azurite for the duration of one test."""
    monkeypatch.setenv("AzureWebJobsStorage", azurite.connection_string)
    return dict(os.environ)
