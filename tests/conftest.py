"""Fixtures shared by every test folder: the fake model server and a Cairn server.

Helpers live in tests/support (importable as `support.*`).
"""

from __future__ import annotations

from collections.abc import Iterator

import pytest
from cairn_server.fakes.runner import FakeModelServer


@pytest.fixture
def fake_model() -> Iterator[FakeModelServer]:
    """The fake OpenAI + Anthropic server with an empty script; tests call set_script."""
    with FakeModelServer() as fake:
        yield fake
