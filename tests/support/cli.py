"""The real `cairn` command in a subprocess, with none of the caller's Cairn or model settings.

Shared by the end-to-end tests.
"""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

CAIRN = [sys.executable, "-m", "cairn_client.cli"]


def cairn_env(data_dir: Path, extra: dict[str, str] | None = None) -> dict[str, str]:
    """This process's environment without CAIRN_/OPENAI_/ANTHROPIC_ settings, plus `extra`."""
    clean = {
        k: v for k, v in os.environ.items() if not k.startswith(("CAIRN_", "OPENAI_", "ANTHROPIC_"))
    }
    return {**clean, "CAIRN_DATA_DIR": str(data_dir), **(extra or {})}


def cairn(
    repo: Path, data_dir: Path, *args: str, env: dict[str, str] | None = None, stdin: str = ""
) -> subprocess.CompletedProcess[str]:
    """Run `cairn ARGS` in `repo` to the end; its output as text."""
    return subprocess.run(
        [*CAIRN, *args],
        cwd=repo,
        env=cairn_env(data_dir, env),
        input=stdin,
        capture_output=True,
        text=True,
        timeout=120,
    )
