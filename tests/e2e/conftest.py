"""End-to-end fixtures: a sample repository the scripted model works on."""

from __future__ import annotations

from pathlib import Path

import pytest
from support.repos import make_repo

APP_BEFORE = "def total(items):\n    return 1\n"
APP_AFTER = "def total(items):\n    return sum(items)\n"


@pytest.fixture
def repo(tmp_path: Path) -> Path:
    return make_repo(
        tmp_path / "repo",
        {"app.py": APP_BEFORE, "README.md": "# sample\n\nTODO: make total() add up\n"},
    )
