"""The real `cairn` command in a subprocess, with none of the caller's Cairn or model settings.

Shared by the end-to-end tests.
"""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

CAIRN = [sys.executable, "-m", "cairn_client.cli"]


# A local server a test leaves behind stops soon (conftest also stops them all at the end).
TEST_IDLE_EXIT_S = "30"


def cairn_env(data_dir: Path, extra: dict[str, str] | None = None) -> dict[str, str]:
    """This process's environment without CAIRN_/OPENAI_/ANTHROPIC_ settings, plus `extra`."""
    clean = {
        k: v for k, v in os.environ.items() if not k.startswith(("CAIRN_", "OPENAI_", "ANTHROPIC_"))
    }
    return {
        **clean,
        "CAIRN_DATA_DIR": str(data_dir),
        "CAIRN_IDLE_EXIT_S": TEST_IDLE_EXIT_S,
        **(extra or {}),
    }


def cairn(
    repo: Path, data_dir: Path, *args: str, env: dict[str, str] | None = None, stdin: str = ""
) -> subprocess.CompletedProcess[str]:
    """Run `cairn ARGS` in `repo` to the end (two minutes at most); its output as text."""
    process = start_cairn(repo, data_dir, *args, env=env, stdin=subprocess.PIPE)
    try:
        out, err = process.communicate(stdin, timeout=120)
    finally:
        if process.poll() is None:  # timed out: no process is left behind
            process.kill()
            process.communicate()
    return subprocess.CompletedProcess(process.args, process.returncode, out, err)


def start_cairn(
    repo: Path,
    data_dir: Path,
    *args: str,
    env: dict[str, str] | None = None,
    stdin: int | None = None,
    output: int = subprocess.PIPE,
    new_session: bool = False,
) -> subprocess.Popen[str]:
    """Start `cairn ARGS` in `repo` and leave it running; stdout and stderr go to `output`."""
    return subprocess.Popen(
        [*CAIRN, *args],
        cwd=repo,
        env=cairn_env(data_dir, env),
        stdin=stdin,
        stdout=output,
        stderr=output,
        text=True,
        start_new_session=new_session,
    )
