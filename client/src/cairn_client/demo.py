"""`cairn demo`: the whole flow on a sample repository with a scripted model, no key needed.

Owns the sample repository, the demo script, and starting the fake model (`python -m cairn_fakes`,
the cairn-fakes package) beside the server.
"""

from __future__ import annotations

import importlib.util
import json
import subprocess
import sys
import tempfile
from pathlib import Path
from typing import Any

from cairn_client.config import ClientSettings
from cairn_client.embedded import require_server
from cairn_client.errors import UsageError

DEMO_REQUEST = "Find the TODO in this repository and fix it."

GREET_BEFORE = """def greet(name: str) -> str:
    # TODO: be polite
    return "hey " + name
"""

SAMPLE_FILES = {
    "README.md": "# greeter\n\nA tiny sample project for the Cairn demo.\n",
    "greet.py": GREET_BEFORE,
    "test_greet.py": (
        "from greet import greet\n\n\ndef test_greet() -> None:\n"
        '    assert greet("Ada") == "Hello, Ada!"\n'
    ),
}

DEMO_SCRIPT: dict[str, Any] = {
    "turns": [
        {
            "text": "Let me look for TODO markers first.",
            "tool_calls": [{"name": "grep", "arguments": {"pattern": "TODO"}}],
        },
        {
            "text": "Found one in `greet.py`; reading it.",
            "tool_calls": [{"name": "read", "arguments": {"path": "greet.py"}}],
        },
        {
            "text": "The greeting is rude and the test expects `Hello, Ada!`. Here is the fix:",
            "tool_calls": [
                {
                    "name": "edit",
                    "arguments": {
                        "path": "greet.py",
                        "old_string": '    # TODO: be polite\n    return "hey " + name\n',
                        "new_string": '    return f"Hello, {name}!"\n',
                    },
                }
            ],
        },
        {
            "text": (
                'Done. `greet("Ada")` now returns `Hello, Ada!`, which is what '
                "`test_greet.py` expects, and the TODO is gone.\n\n"
                "That was the whole loop: the model asked, your policy or you approved, "
                "and the tools ran on your machine."
            )
        },
    ]
}


def create_sample_repo(folder: Path) -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    for name, text in SAMPLE_FILES.items():
        (folder / name).write_text(text)
    git = ["git", "-c", "user.name=Cairn Demo", "-c", "user.email=demo@cairn.invalid"]
    subprocess.run([*git, "init", "-q"], cwd=folder, check=True)
    subprocess.run([*git, "add", "."], cwd=folder, check=True)
    subprocess.run([*git, "commit", "-q", "-m", "Sample project"], cwd=folder, check=True)
    return folder


def start_fake_model(script: dict[str, Any], folder: Path) -> tuple[subprocess.Popen[str], str]:
    """The fake OpenAI-compatible model server; returns the process and its base URL."""
    script_path = folder / "script.json"
    script_path.write_text(json.dumps(script))
    process = subprocess.Popen(
        [sys.executable, "-m", "cairn_fakes", "--script", str(script_path)],
        stdout=subprocess.PIPE,
        stderr=subprocess.DEVNULL,
        stdin=subprocess.DEVNULL,
        text=True,
    )
    assert process.stdout is not None
    info = json.loads(process.stdout.readline())
    return process, str(info["openai_base_url"])


def run_demo() -> int:
    from cairn_client.launch import prepare_launch
    from cairn_client.tui.run import run_tui

    require_server("`cairn demo` (it runs the real server)")
    if importlib.util.find_spec("cairn_fakes") is None:
        raise UsageError("the demo needs the cairn-fakes package (its scripted model); install it")
    folder = Path(tempfile.mkdtemp(prefix="cairn-demo-"))
    repo = create_sample_repo(folder / "greeter")
    model, base_url = start_fake_model(DEMO_SCRIPT, folder)
    try:
        launch = prepare_launch(
            repo,
            settings=ClientSettings(server_url=None, token=None, data_dir=folder / "data"),
            server_env={
                "CAIRN_DATABASE_URL": f"sqlite+aiosqlite:///{folder / 'data' / 'cairn.db'}",
                "CAIRN_MODEL": "openai/cairn-demo",
                "OPENAI_API_KEY": "demo-key-not-secret",
                "OPENAI_BASE_URL": base_url,
            },
        )
        run_tui(launch, initial_input=DEMO_REQUEST)
    finally:
        model.terminate()
        model.wait(10)
    print(f"The demo repository is at {repo} (look at greet.py).")
    return 0
