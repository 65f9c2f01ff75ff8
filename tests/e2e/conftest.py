"""End-to-end fixtures: a sample repository the scripted model works on."""

from __future__ import annotations

from pathlib import Path

import pytest
from support.repos import APP_BEFORE, make_repo


@pytest.fixture
def repo(tmp_path: Path) -> Path:
    return make_repo(
        tmp_path / "repo",
        {"app.py": APP_BEFORE, "README.md": "# sample\n\nTODO: make total() add up\n"},
    )
