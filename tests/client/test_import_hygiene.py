"""Import hygiene: headless mode, tickets and the tools never load Textual (as in Harlequin's
test_import_hygiene), so `cairn -p` in CI starts without the TUI's weight."""

from __future__ import annotations

import subprocess
import sys

HEADLESS_MODULES = (
    "cairn_client.headless",
    "cairn_client.ticket.headless",
    "cairn_client.ticket.flow",
    "cairn_client.ticket.command",
    "cairn_client.tools.registry",
    "cairn_client.policy.policy",
    "cairn_client.session",
    "cairn_client.runs_cli",
    "cairn_client.memory_cli",
)


def test_headless_code_never_loads_textual() -> None:
    probe = (
        "import sys\n"
        + "".join(f"import {module}\n" for module in HEADLESS_MODULES)
        + "print(sorted(m for m in sys.modules if m == 'textual' or m.startswith('textual.')"
        " or m.startswith('cairn_client.tui')))"
    )
    done = subprocess.run(
        [sys.executable, "-c", probe], capture_output=True, text=True, timeout=60, check=True
    )
    assert done.stdout.strip() == "[]"
