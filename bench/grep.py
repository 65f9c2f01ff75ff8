"""Grep speed: Cairn's grep tool beside the raw `rg` binary, on the same large tree, same run.

Cairn's time is the whole tool call (prepare, rg with the secret-file exclusions, the
capped parse, redaction); raw is `rg -n --hidden PATTERN` with its output read in full.
The tree is a copy of this Python's site-packages (a venv's own `.gitignore` would hide
it from both) unless a folder is given.

    uv run python bench/grep.py [FOLDER]
"""

from __future__ import annotations

import asyncio
import shutil
import statistics
import subprocess
import sys
import sysconfig
import tempfile
import time
from pathlib import Path

from cairn_client.config import ClientSettings
from cairn_client.tools.registry import ShellPlacement, execute_call, prepare_call
from cairn_client.tools.sandbox import Sandbox
from cairn_client.tools.search import ripgrep_binary
from cairn_protocol import ToolRequest

RUNS = 5
PATTERNS = ("def __init__\\(self", "TODO", "zzqx_not_there_qq")


def cairn_grep(root: Path, pattern: str) -> tuple[float, str]:
    request = ToolRequest(run_id="b", call_id="b", tool="grep", arguments={"pattern": pattern})
    placement = ShellPlacement(Sandbox(None, environ=ClientSettings.from_env().process_env))
    start = time.perf_counter()
    outcome = asyncio.run(execute_call(root, prepare_call(root, request), placement=placement))
    return time.perf_counter() - start, outcome.content


def raw_rg(root: Path, pattern: str) -> tuple[float, int]:
    command = [str(ripgrep_binary()), "-n", "--no-heading", "--hidden", "--color", "never"]
    start = time.perf_counter()
    done = subprocess.run([*command, pattern], cwd=root, capture_output=True, check=False)
    return time.perf_counter() - start, done.stdout.count(b"\n")


def main() -> None:
    if len(sys.argv) > 1:
        measure(Path(sys.argv[1]))
        return
    with tempfile.TemporaryDirectory() as scratch:
        root = Path(scratch) / "site-packages"
        shutil.copytree(sysconfig.get_paths()["purelib"], root, symlinks=True)
        measure(root)


def measure(root: Path) -> None:
    files = sum(1 for path in root.rglob("*") if path.is_file())
    print(f"tree: {root} ({files:,} files); rg {ripgrep_binary()}; median of {RUNS} runs")
    ratios: list[float] = []
    for pattern in PATTERNS:
        raw_rg(root, pattern)  # warm the page cache for both
        cairn = [cairn_grep(root, pattern)[0] for _ in range(RUNS)]
        raw = [raw_rg(root, pattern)[0] for _ in range(RUNS)]
        matches = raw_rg(root, pattern)[1]
        cairn_s, raw_s = statistics.median(cairn), statistics.median(raw)
        ratios.append(cairn_s / raw_s)
        print(
            f"  {pattern!r:28} raw rg {raw_s * 1000:7.1f} ms ({matches:,} lines)   "
            f"cairn grep {cairn_s * 1000:7.1f} ms   ratio {cairn_s / raw_s:.2f}"
        )
    figures = {
        "files": files,
        "ratio_median": f"{statistics.median(ratios):.2f}",
        "ratio_max": f"{max(ratios):.2f}",
        **{f"ratio_{i}": f"{r:.2f}" for i, r in enumerate(ratios)},
    }
    print(" ".join(f"{key}={value}" for key, value in figures.items()))


if __name__ == "__main__":
    main()
