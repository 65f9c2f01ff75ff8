"""The attack suite's quick subset (bench/attacks.py --quick): one batch per category through
the real `cairn`, the real servers and the fake model, so CI exercises the harness and the
defences it checks. Every attack must hold."""

from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path

import pytest

SUITE = Path(__file__).resolve().parents[2] / "bench" / "attacks.py"


@pytest.mark.timeout(300)
def test_the_quick_attack_subset_holds() -> None:
    done = subprocess.run(
        [sys.executable, str(SUITE), "--quick"],
        capture_output=True,
        text=True,
        timeout=280,
        check=False,
    )
    lines = done.stdout.strip().splitlines()
    assert lines, done.stderr
    figures = dict(re.findall(r"(\w+)=([\d.]+)", lines[-1]))
    assert int(figures.get("tried", "0")) >= 100, lines[-1]
    failed = [line for line in lines if " FAILED " in line]
    assert figures.get("failed") == "0" and done.returncode == 0, "\n".join(failed) or done.stderr
    for category in (
        "confinement",
        "shell",
        "sandbox",
        "secrets",
        "multi_client",
        "storage",
        "protocol",
    ):
        assert f"{category}_failed=0" in lines[-1], lines[-1]
