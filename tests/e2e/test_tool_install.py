"""The README's `uv tool install` puts a working `cairn` on PATH, outside this checkout."""

from __future__ import annotations

import os
import shutil
import subprocess
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]


@pytest.mark.skipif(shutil.which("uv") is None, reason="uv is not installed")
def test_uv_tool_install_gives_a_cairn_that_runs_anywhere(tmp_path: Path) -> None:
    readme = (ROOT / "README.md").read_text()
    command = next(line for line in readme.splitlines() if line.startswith("uv tool install"))
    tools, bin_dir = tmp_path / "tools", tmp_path / "bin"
    # This machine's environment (its package index and cache), with a tool folder of the test's.
    env = {**os.environ, "UV_TOOL_DIR": str(tools), "UV_TOOL_BIN_DIR": str(bin_dir)}
    installed = subprocess.run(
        [shutil.which("uv") or "uv", *command.split()[1:]],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=600,
        check=False,
    )
    assert installed.returncode == 0, installed.stderr
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    version = subprocess.run(
        [str(bin_dir / "cairn"), "--version"],
        cwd=elsewhere,
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert version.returncode == 0 and version.stdout.startswith("cairn "), version.stderr
