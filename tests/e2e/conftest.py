"""End-to-end fixtures: a sample repository the scripted model works on, a fake of its own.

Processes killed mid-run may still reach the model for a moment: each end-to-end test gets a
fake model server no other test talks to.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
from cairn_fakes.runner import FakeModelServer
from support.repos import APP_BEFORE, make_repo


@pytest.fixture
def fake_model() -> Iterator[FakeModelServer]:
    """A fresh fake OpenAI + Anthropic server with an empty script; tests call set_script."""
    with FakeModelServer() as fake:
        yield fake


@pytest.fixture
def repo(tmp_path: Path) -> Path:
    return make_repo(
        tmp_path / "repo",
        {"app.py": APP_BEFORE, "README.md": "# sample\n\nTODO: make total() add up\n"},
    )
