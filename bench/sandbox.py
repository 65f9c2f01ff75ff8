"""What the sandbox costs a shell command: sandboxed against plain `/bin/sh -c` in one process.

Usage: uv run python bench/sandbox.py [TREE ...] [--runs N]
Runs `true` and `git status --short` through the shell tool's runner, each N times, first
with the unsandboxed launch and then in bubblewrap (which includes listing the tree's secret
files to mask them), in each TREE (default: this repository). Prints per tree and command the
median wall time of both and their ratio, then one key=value line.
"""

from __future__ import annotations

import argparse
import asyncio
import statistics
import subprocess
import sys
import time
from collections.abc import Mapping
from pathlib import Path

from cairn_client.config import ClientSettings
from cairn_client.tools.sandbox import Sandbox, unsandboxed_launch
from cairn_client.tools.shell import run_shell

COMMANDS = ("true", "git status --short")


async def median_seconds(root: Path, command: str, environ: Mapping[str, str], runs: int) -> float:
    times = []
    for _ in range(runs):
        started = time.perf_counter()
        await run_shell(root, command, 60, unsandboxed_launch(command, environ))
        times.append(time.perf_counter() - started)
    return statistics.median(times)


async def sandboxed_median(root: Path, sandbox: Sandbox, command: str, runs: int) -> float:
    """The sandboxed launch is built per command (its secret scan included), as in a session."""
    times = []
    for _ in range(runs):
        started = time.perf_counter()
        launch = await asyncio.to_thread(sandbox.launch, root, command)
        await run_shell(root, command, 60, launch)
        times.append(time.perf_counter() - started)
    return statistics.median(times)


def tracked_files(root: Path) -> int:
    done = subprocess.run(["git", "ls-files"], cwd=root, capture_output=True, text=True)
    return len(done.stdout.splitlines())


async def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("trees", nargs="*", type=Path, default=[Path(__file__).parent.parent])
    parser.add_argument("--runs", type=int, default=20)
    options = parser.parse_args()
    sandbox = Sandbox.detect(environ=ClientSettings.from_env().process_env)
    if not sandbox.active:
        print(f"no sandbox: {sandbox.problem}", file=sys.stderr)
        return 2
    figures: dict[str, float] = {}
    for tree in options.trees:
        root = tree.resolve()
        print(f"{root.name}: {tracked_files(root):,} tracked files")
        for command in COMMANDS:
            plain = await median_seconds(root, command, sandbox.environ, options.runs)
            boxed = await sandboxed_median(root, sandbox, command, options.runs)
            ratio = boxed / plain
            print(
                f"  {command:<20} plain {plain * 1000:7.1f} ms  sandboxed {boxed * 1000:7.1f} ms"
                f"  ratio {ratio:5.2f}"
            )
            key = f"{root.name}_{command.split()[0]}".replace("-", "_")
            figures[f"{key}_ratio"] = round(ratio, 2)
            figures[f"{key}_sandboxed_ms"] = round(boxed * 1000, 1)
    print(" ".join(f"{key}={value}" for key, value in figures.items()))
    return 0


if __name__ == "__main__":
    sys.exit(asyncio.run(main()))
