"""The shell sandbox, for real: bubblewrap runs each command and what it may see is checked."""

from __future__ import annotations

import os
import shutil
import socket
import subprocess
from collections.abc import Iterator
from pathlib import Path

import pytest
from cairn_client.tools.registry import ShellPlacement, execute_call, prepare_call
from cairn_client.tools.sandbox import (
    SANDBOX_HOME,
    Sandbox,
    SandboxSettings,
    seatbelt_profile,
    secret_files,
)
from cairn_client.tools.shell import ShellResult, run_shell
from cairn_protocol import ToolRequest
from support.settings import detected_sandbox, unsandboxed

pytestmark = pytest.mark.skipif(
    not detected_sandbox().active, reason="bubblewrap cannot start here"
)


@pytest.fixture
def workspace(tmp_path: Path) -> Path:
    root = tmp_path / "repo"
    root.mkdir()
    subprocess.run(["git", "init", "-q", str(root)], check=True)
    (root / "app.py").write_text("print('hi')\n")
    (root / ".env").write_text("API_TOKEN=abcdef123456\n")
    (root / "keys").mkdir()
    (root / "keys" / "deploy.pem").write_text("-----BEGIN PRIVATE KEY-----\nx\n")
    (root / ".cairn").mkdir()
    (root / ".cairn" / "settings.toml").write_text('mode = "strict"\n')
    return root


@pytest.fixture
def home(workspace: Path) -> Path:
    """A home folder with credentials; inside the workspace, so hiding must win over the
    workspace's writable mount."""
    folder = workspace / "home"
    (folder / ".ssh").mkdir(parents=True)
    (folder / ".ssh" / "id_ed25519").write_text("PRIVATE\n")
    (folder / ".aws").mkdir()
    (folder / ".aws" / "credentials").write_text("[default]\naws_secret_access_key=x\n")
    (folder / ".netrc").write_text("machine h login u password p\n")
    (folder / ".gitconfig").write_text("[user]\n\tname = Sandboxed Tester\n")
    return folder


def sandbox(home: Path | None = None, **settings: object) -> Sandbox:
    found = detected_sandbox(SandboxSettings(**settings))  # type: ignore[arg-type]
    return Sandbox(
        found.kind,
        found.problem,
        found.settings,
        home=home or Path.home(),
        program=found.program,
        environ=found.environ,
    )


async def run(
    box: Sandbox, root: Path, command: str, *, network: bool = False, timeout: float = 30
) -> ShellResult:
    launch = box.launch(root, command, network=network)
    return await run_shell(root, command, timeout, launch)


async def test_the_workspace_is_writable_and_the_rest_read_only(workspace: Path) -> None:
    result = await run(sandbox(), workspace, "echo made > new.txt && touch /usr/cairn-x")
    assert (workspace / "new.txt").read_text() == "made\n"
    assert "Read-only file system" in result.stderr
    absent = "test -e /usr/cairn-x || echo absent"
    outside = await run_shell(workspace, absent, None, unsandboxed(absent))
    assert outside.stdout == "absent\n"


async def test_git_hooks_config_and_cairn_settings_cannot_be_written(workspace: Path) -> None:
    command = (
        "printf '#!/bin/sh\\ntouch pwned\\n' > .git/hooks/pre-commit; "
        "git config core.hooksPath evil; echo 'mode = \"bypass\"' > .cairn/settings.toml; "
        "git status --short >/dev/null && echo git-works"
    )
    result = await run(sandbox(), workspace, command)
    assert not (workspace / ".git" / "hooks" / "pre-commit").exists()
    assert "hooksPath" not in (workspace / ".git" / "config").read_text()
    assert (workspace / ".cairn" / "settings.toml").read_text() == 'mode = "strict"\n'
    assert "git-works" in result.stdout  # git itself still works


async def test_secret_files_in_the_workspace_are_masked(workspace: Path) -> None:
    result = await run(sandbox(), workspace, "cat .env; base64 keys/deploy.pem; cat app.py")
    assert "abcdef123456" not in result.stdout
    assert "PRIVATE" not in result.stdout and "LS0t" not in result.stdout
    assert "print('hi')" in result.stdout


async def test_allowed_secret_files_stay_readable(workspace: Path) -> None:
    launch = sandbox().launch(workspace, "cat .env", allowed_secrets=[".env"])
    result = await run_shell(workspace, "cat .env", 30, launch)
    assert "abcdef123456" in result.stdout


async def test_credentials_are_hidden_even_inside_the_workspace(
    workspace: Path, home: Path
) -> None:
    secrets = f"{home}/.ssh/id_ed25519 {home}/.netrc {home}/.aws/credentials"
    command = f"cat {secrets}; git config user.name"
    result = await run(sandbox(home), workspace, command)
    assert "PRIVATE" not in result.stdout
    assert "password p" not in result.stdout and "aws_secret" not in result.stdout
    assert "Sandboxed Tester" in result.stdout  # git identity is carried in, read-only


async def test_the_environment_is_an_allow_list(
    workspace: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("CAIRN_TEST_SECRET_SETTING", "leaked-value")
    monkeypatch.setenv("LESSOPEN", "|touch pwned %s")
    monkeypatch.setenv("CARGO_HOME", "/opt/cargo")
    box = sandbox(env=("CARGO_HOME",))
    result = await run(box, workspace, "env; cat /proc/1/environ | tr '\\0' '\\n'")
    assert "leaked-value" not in result.stdout and "LESSOPEN" not in result.stdout
    assert f"HOME={SANDBOX_HOME}" in result.stdout
    assert "CARGO_HOME=/opt/cargo" in result.stdout  # named by the user


async def test_own_process_namespace(workspace: Path) -> None:
    result = await run(sandbox(), workspace, "ls /proc | grep -c '^[0-9]'; echo $$")
    assert int(result.stdout.split()[0]) < 10  # only the sandbox's own processes
    assert os.getpid() != int(result.stdout.split()[1])


@pytest.fixture
def listener() -> Iterator[int]:
    server = socket.socket()
    server.bind(("127.0.0.1", 0))
    server.listen(1)
    try:
        yield server.getsockname()[1]
    finally:
        server.close()


async def test_no_network_unless_allowed(workspace: Path, listener: int) -> None:
    probe = (
        "python3 -c \"import socket; socket.create_connection(('127.0.0.1', "
        f"{listener}), timeout=3); print('connected')\""
    )
    closed = await run(sandbox(), workspace, probe)
    assert "connected" not in closed.stdout
    opened = await run(sandbox(), workspace, probe, network=True)
    assert "connected" in opened.stdout


async def test_a_timeout_kills_everything_in_the_sandbox(workspace: Path) -> None:
    result = await run(sandbox(), workspace, "sleep 31.7 & sleep 31.7", timeout=1)
    assert result.timed_out
    pgrep = "pgrep -f '^sleep 31.7' || true"
    leftover = await run_shell(workspace, pgrep, None, unsandboxed(pgrep))
    assert leftover.stdout.strip() == ""


def test_a_sandbox_that_cannot_start_says_why(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("PATH", "/nonexistent")
    missing = detected_sandbox()
    assert not missing.active and "bubblewrap" in (missing.problem or "")
    off = detected_sandbox(SandboxSettings(enabled=False))
    assert not off.active and "turned off" in (off.problem or "")


def test_secret_files_are_found_even_when_git_ignores_them(workspace: Path) -> None:
    (workspace / ".gitignore").write_text(".env\nbuild/\n")
    (workspace / "build").mkdir()
    (workspace / "build" / "id_rsa").write_text("x")
    (workspace / ".env.example").write_text("API_TOKEN=\n")
    found = {p.relative_to(workspace).as_posix() for p in secret_files(workspace)}
    assert found == {".env", "keys/deploy.pem", "build/id_rsa"}
    assert ".env" not in {p.name for p in secret_files(workspace, [".env"])}


def test_the_seatbelt_profile_has_the_same_shape(tmp_path: Path) -> None:
    profile = seatbelt_profile(tmp_path, [tmp_path / ".ssh"], network=False)
    real = os.path.realpath(tmp_path)
    assert f'(allow file-write* (subpath "{real}")' in profile
    assert f'(subpath "{real}/.git/hooks")' in profile and "(deny network*)" in profile
    assert f'(deny file-read* (subpath "{real}/.ssh"))' in profile
    assert "(deny network*)" not in seatbelt_profile(tmp_path, [], network=True)


def test_bwrap_is_really_used() -> None:
    assert shutil.which("bwrap") is not None


async def test_files_the_read_rules_withhold_are_hidden_from_commands(workspace: Path) -> None:
    (workspace / "private").mkdir()
    (workspace / "private" / "notes.txt").write_text("salary list\n")
    (workspace / "public.txt").write_text("salary talk is public\n")
    launch = sandbox().launch(workspace, "grep -rh salary .", withheld=("private/**",))
    result = await run_shell(workspace, "grep -rh salary .", 30, launch)
    assert "salary talk is public" in result.stdout
    assert "salary list" not in result.stdout


async def test_git_history_of_withheld_files_is_cut_from_the_output(workspace: Path) -> None:
    (workspace / "private").mkdir()
    (workspace / "private" / "notes.txt").write_text("salary list\n")
    (workspace / "app.py").write_text("print('bye')\n")
    identity = "-c user.name=t -c user.email=t@t"
    commit = f"git add app.py private && git {identity} commit -qm all"
    await run_shell(workspace, commit, None, unsandboxed(commit))
    placement = ShellPlacement(sandbox(), withheld=("private/**",))
    arguments = {"command": "git log -p"}
    request = ToolRequest(run_id="r", call_id="c", tool="shell", arguments=arguments)
    outcome = await execute_call(workspace, prepare_call(workspace, request), placement=placement)
    assert "salary list" not in outcome.content
    assert "[the diff of private/notes.txt is withheld by your read rules]" in outcome.content
    assert "+print('bye')" in outcome.content
