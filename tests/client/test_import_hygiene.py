"""Import hygiene: headless mode, tickets and the tools never load Textual (as in Harlequin's
test_import_hygiene), so `cairn -p` in CI starts without the TUI's weight."""

from __future__ import annotations

import json
import subprocess
import sys

import pytest

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


HEAVY = ("textual", "fastapi", "sqlalchemy", "sqlmodel", "openai", "anthropic", "httpx", "rich")


def roots_loaded_by(imports: list[str]) -> list[str]:
    """The HEAVY libraries a fresh interpreter holds after these imports."""
    probe = (
        "import json, sys\n"
        + "".join(f"import {module}\n" for module in imports)
        + "roots = {name.partition('.')[0] for name in sys.modules}\n"
        f"print(json.dumps(sorted(roots & set({HEAVY!r}))))"
    )
    done = subprocess.run(
        [sys.executable, "-c", probe], capture_output=True, text=True, timeout=60, check=True
    )
    loaded: list[str] = json.loads(done.stdout)
    return loaded


def test_the_headless_path_loads_no_rest_client_and_no_rich() -> None:
    """`cairn -p` (the CLI, the launch and the headless loop) reaches its first model request
    without httpx (with its click and pygments) or Rich: they load only for a command that
    uses them (`/model`, `cairn memory …`)."""
    loaded = roots_loaded_by(["cairn_client.cli", "cairn_client.launch", "cairn_client.headless"])
    assert loaded == []


def test_the_tui_opens_without_the_rest_client() -> None:
    """The TUI's modules load httpx with their first REST call, not at start."""
    loaded = roots_loaded_by(["cairn_client.tui.app", "cairn_client.tui.run"])
    assert "httpx" not in loaded and "textual" in loaded


@pytest.mark.parametrize("argument", ["--help", "--version"])
def test_help_and_version_load_no_heavy_library(argument: str) -> None:
    """`cairn --help` and `cairn --version` (the installed entry point's code, run in a fresh
    interpreter) answer without loading the TUI, the server, the database or a model SDK."""
    probe = (
        "import json, sys\n"
        f"sys.argv = ['cairn', {argument!r}]\n"
        "from cairn_client.entry import main\n"
        "try:\n    main()\nexcept SystemExit:\n    pass\n"
        "roots = {name.partition('.')[0] for name in sys.modules}\n"
        f"print(json.dumps(sorted(roots & set({HEAVY!r}))), file=sys.stderr)"
    )
    done = subprocess.run(
        [sys.executable, "-c", probe], capture_output=True, text=True, timeout=60, check=True
    )
    assert ("Usage: cairn" if argument == "--help" else "cairn ") in done.stdout
    assert done.stderr.strip().splitlines()[-1] == "[]"


def help_of(command: list[str]) -> str:
    """What the real `cairn COMMAND --help` prints."""
    done = subprocess.run(
        [sys.executable, "-m", "cairn_client.cli", *command, "--help"],
        capture_output=True,
        text=True,
        timeout=60,
        check=True,
    )
    return done.stdout


@pytest.mark.parametrize(
    "command",
    [[], ["memory", "set"], ["runs", "list"], ["conversations"], ["agent", "import"]],
)
def test_help_shows_flags_without_a_type(command: list[str]) -> None:
    shown = help_of(command)
    assert "-h, --help" in shown and "<bool>" not in shown


@pytest.mark.parametrize("command", [[], ["context"], ["runs", "list"], ["runs", "show"]])
def test_dash_c_means_continue_wherever_it_is_offered(command: list[str]) -> None:
    offered = [line for line in help_of(command).splitlines() if line.strip().startswith("-c")]
    assert all("--continue" in line for line in offered), offered
