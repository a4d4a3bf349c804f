"""tools/azurite.py: the Azurite every test and `make run` start on free ports."""

from __future__ import annotations

import socket

import pytest

from tools import azurite
from tools.azurite import Azurite, AzuriteExited, port_open


@pytest.fixture
def taken_port():
    """A port another process holds, as one can between free_port() and Azurite's bind."""
    with socket.socket() as held:
        held.bind(("127.0.0.1", 0))
        held.listen()
        yield held.getsockname()[1]


def test_ports_it_chose_are_chosen_again_when_one_was_taken_meanwhile(taken_port, monkeypatch):
    picks = iter([taken_port])
    real = azurite.free_port
    monkeypatch.setattr(azurite, "free_port", lambda: next(picks, None) or real())
    with Azurite() as started:
        assert taken_port not in started.ports
        assert all(port_open("127.0.0.1", port) for port in started.ports)


def test_ports_given_are_not_changed(taken_port):
    with pytest.raises(AzuriteExited):
        Azurite(blob_port=taken_port).start()
