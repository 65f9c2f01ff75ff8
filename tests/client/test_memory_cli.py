"""`cairn memory ...` and `cairn context` against a real server, run in a real git repository.

Covers what a person sees and the exit codes: 0 ok, 1 server error or not found, 2 usage error.
"""

from __future__ import annotations

import asyncio
import sys
import uuid
from pathlib import Path

import pytest
from cairn_client.api import CairnApi
from cairn_client.cli import app
from cairn_client.workspace import detect_workspace
from cairn_protocol.messages import RunFinished, UserMessage
from cairn_protocol.rest import AgentPublic
from support.repos import make_repo
from support.servers import TEST_TOKEN, Served, script
from support.settings import environment
from support.wire import WireClient
from typer.testing import CliRunner, Result


@pytest.fixture
def repo(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """A repository of its own (so an agent of its own), and the current directory."""
    path = make_repo(tmp_path / "repo", {"README.md": f"# shop {uuid.uuid4().hex}\n"})
    monkeypatch.chdir(path)
    return path


def cairn(served: Served, *args: str, input: str | None = None, **env: str) -> Result:
    environment = {
        "CAIRN_SERVER_URL": served.url,
        "CAIRN_TOKEN": TEST_TOKEN,
        "COLUMNS": "200",
        "NO_COLOR": "1",
        **env,
    }
    return CliRunner().invoke(app, list(args), input=input, env=environment)


def agent_of(served: Served, repo: Path) -> AgentPublic:
    async def find() -> AgentPublic:
        async with CairnApi(served.url, TEST_TOKEN) as api:
            return await api.ensure_agent(detect_workspace(repo, environ=environment()).identity)

    return asyncio.run(find())


def block_value(served: Served, repo: Path, label: str) -> tuple[int, str]:
    agent = agent_of(served, repo)

    async def read() -> tuple[int, str]:
        async with CairnApi(served.url, TEST_TOKEN) as api:
            block = await api.get_block(agent.id, label)
            return block.version, block.value

    return asyncio.run(read())


def lines(result: Result) -> list[str]:
    return [" ".join(line.split()) for line in result.stdout.splitlines() if line.strip()]


# ---------------------------------------------------------------- reading and writing blocks


def test_list_show_create_and_set(served: Served, repo: Path) -> None:
    listed = cairn(served, "memory", "list")
    assert listed.exit_code == 0, listed.output
    rows = lines(listed)
    assert rows[0].split() == ["LABEL", "CHARS", "VERSION", "DESCRIPTION"]
    assert [row.split()[0] for row in rows[1:]] == ["persona", "human", "project"]
    assert rows[3].startswith("project 0/8,000 v1 This codebase")

    created = cairn(
        served,
        "memory",
        "create",
        "testing",
        "--value",
        "uv run pytest -q",
        "-d",
        "How to run the tests",
        "--limit",
        "300",
        "--read-only",
    )
    assert created.exit_code == 0, created.output
    assert created.stdout.strip() == "created testing · v1 · 16/300 chars · read-only"

    shown = cairn(served, "memory", "show", "testing")
    assert shown.exit_code == 0
    assert lines(shown)[0] == "testing · v1 · 16/300 chars · read-only"
    assert lines(shown)[1] == "How to run the tests"
    assert lines(shown)[-1] == "uv run pytest -q"
    assert cairn(served, "memory", "show", "testing", "--raw").stdout == "uv run pytest -q\n"

    value_file = repo / "value.md"
    value_file.write_text("uv run pytest -q -x\n")
    changed = cairn(
        served, "memory", "set", "testing", "--file", str(value_file), "--writable", "-m", "faster"
    )
    assert changed.exit_code == 0, changed.output
    assert changed.stdout.strip() == "saved testing · v2 · 20/300 chars"

    piped = cairn(served, "memory", "set", "testing", "--file", "-", input="from stdin\n")
    assert piped.exit_code == 0, piped.output
    assert block_value(served, repo, "testing") == (3, "from stdin\n")


def test_a_secret_set_into_a_block_is_cut_and_the_person_told(served: Served, repo: Path) -> None:
    password = "Wq7Rz2Lm9Xc4Tv"
    value = f"staging: postgres://app:{password}@db.internal/app"
    saved = cairn(served, "memory", "set", "project", "--value", value)
    assert saved.exit_code == 0, saved.output
    assert saved.stdout.strip().endswith("· 1 secret redacted before storing")
    stored = block_value(served, repo, "project")[1]
    assert stored == "staging: postgres://app:[REDACTED:secret-value]@db.internal/app"


def test_edit_opens_the_editor_and_saves_a_new_version(served: Served, repo: Path) -> None:
    cairn(served, "memory", "set", "project", "--value", "Build with make.")
    edited = cairn(
        served, "memory", "edit", "project", "-m", "ninja now", EDITOR="sed -i s/make/ninja/"
    )
    assert edited.exit_code == 0, edited.output
    assert edited.stdout.strip() == "saved project · v3 · 17/8,000 chars"
    assert block_value(served, repo, "project") == (3, "Build with ninja.")

    unchanged = cairn(served, "memory", "edit", "project", EDITOR="true")
    assert unchanged.exit_code == 0
    assert unchanged.stdout.strip() == "project: no change"

    history = cairn(served, "memory", "history", "project")
    assert history.exit_code == 0
    rows = lines(history)
    assert rows[0].split() == ["VERSION", "WHEN", "ACTION", "AUTHOR", "REASON"]
    assert [row.split()[0] for row in rows[1:]] == ["v3", "v2", "v1"]
    assert rows[1].split()[3:] == ["edit", "user", "local", "ninja", "now"]
    assert rows[3].split()[3:] == ["create", "system", "default", "block"]

    failing = cairn(served, "memory", "edit", "project", EDITOR="false")
    assert failing.exit_code == 1
    assert failing.stderr == "cairn: the editor exited with status 1; nothing saved\n"


def test_an_edit_that_lost_a_race_is_refused_and_the_text_kept(
    served: Served, repo: Path, tmp_path: Path
) -> None:
    """The block changes on the server while the editor is open."""
    agent = agent_of(served, repo)
    editor = tmp_path / "racing_editor.py"
    editor.write_text(
        "import os, sys, httpx\n"
        "httpx.patch(\n"
        f"    '{served.url}/v1/agents/{agent.id}/blocks/project',\n"
        "    json={'value': 'theirs'},\n"
        f"    headers={{'Authorization': 'Bearer {TEST_TOKEN}'}},\n"
        ").raise_for_status()\n"
        "open(sys.argv[1], 'w').write('mine\\n')\n"
    )
    result = cairn(served, "memory", "edit", "project", EDITOR=f"{sys.executable} {editor}")
    assert result.exit_code == 1
    assert len(result.stderr.splitlines()) == 1
    assert result.stderr.startswith("cairn: project changed meanwhile (you edited v1)")
    kept = Path(result.stderr.split("kept in ")[1].split(":")[0])
    assert kept.read_text() == "mine"
    assert block_value(served, repo, "project") == (2, "theirs")

    applied = cairn(served, "memory", "set", "project", "--file", str(kept))
    assert applied.exit_code == 0
    assert block_value(served, repo, "project") == (3, "mine")
    kept.unlink()


# ---------------------------------------------------------------- history, diff, revert, delete


def test_diff_and_revert(served: Served, repo: Path) -> None:
    cairn(served, "memory", "set", "human", "--value", "Prefers tabs.\nWrites Go.\n")
    cairn(served, "memory", "set", "human", "--value", "Prefers spaces.\nWrites Go.\n")

    newest = cairn(served, "memory", "diff", "human")
    assert newest.exit_code == 0, newest.output
    assert newest.stdout.splitlines() == [
        "--- human v2",
        "+++ human v3",
        "@@ -1,2 +1,2 @@",
        "-Prefers tabs.",
        "+Prefers spaces.",
        " Writes Go.",
    ]
    chosen = cairn(served, "memory", "diff", "human", "1", "3")
    assert "+Prefers spaces." in chosen.stdout and "--- human v1" in chosen.stdout
    same = cairn(served, "memory", "diff", "human", "3", "3")
    assert same.stdout.strip() == "human: v3 and v3 have the same value"

    reverted = cairn(served, "memory", "revert", "human", "2", "-m", "tabs after all")
    assert reverted.exit_code == 0, reverted.output
    assert reverted.stdout.strip() == (
        "reverted human to the value of v2: now human · v4 · 25/2,000 chars"
    )
    assert block_value(served, repo, "human") == (4, "Prefers tabs.\nWrites Go.\n")
    assert (
        "revert user local tabs after all" in lines(cairn(served, "memory", "history", "human"))[1]
    )


def test_delete_asks_first_and_revert_brings_the_block_back(served: Served, repo: Path) -> None:
    cairn(served, "memory", "create", "notes", "--value", "keep me")
    declined = cairn(served, "memory", "delete", "notes", input="n\n")
    assert declined.exit_code == 1
    assert "not deleted" in declined.stdout
    assert block_value(served, repo, "notes") == (1, "keep me")

    deleted = cairn(served, "memory", "delete", "notes", "--yes")
    assert deleted.exit_code == 0
    assert deleted.stdout.strip() == "deleted notes (`cairn memory revert notes 1` brings it back)"
    assert cairn(served, "memory", "show", "notes").exit_code == 2  # no such block: usage

    assert cairn(served, "memory", "revert", "notes", "1").exit_code == 0
    assert block_value(served, repo, "notes") == (3, "keep me")


# ---------------------------------------------------------------- errors and exit codes


def test_server_refusals_are_one_line_with_the_code_of_the_table(
    served: Served, repo: Path
) -> None:
    """README, Exit codes: what names nothing or does not fit is 2, a conflict is 1."""
    missing = cairn(served, "memory", "show", "nope")
    assert missing.exit_code == 2
    assert missing.stderr == "cairn: no block 'nope'; the blocks are: human, persona, project\n"

    taken = cairn(served, "memory", "create", "project")
    assert (taken.exit_code, taken.stderr) == (1, "cairn: block 'project' already exists\n")

    over = cairn(served, "memory", "create", "tiny", "--limit", "3", "--value", "too long")
    assert over.exit_code == 2
    assert over.stderr.startswith("cairn: ") and len(over.stderr.splitlines()) == 1

    no_version = cairn(served, "memory", "revert", "project", "9")
    assert no_version.exit_code == 2
    assert len(no_version.stderr.splitlines()) == 1


def test_usage_errors_exit_2(served: Served, repo: Path) -> None:
    both = cairn(served, "memory", "set", "project", "--value", "a", "--file", "b.md")
    assert (both.exit_code, both.stderr) == (
        2,
        "cairn: give the value with --value or --file, not both\n",
    )
    nothing = cairn(served, "memory", "set", "project")
    assert nothing.exit_code == 2
    assert "nothing to change" in nothing.stderr
    unreadable = cairn(served, "memory", "create", "notes", "--file", "missing.md")
    assert (unreadable.exit_code, unreadable.stderr) == (
        2,
        "cairn: cannot read missing.md: No such file or directory\n",
    )
    assert cairn(served, "memory", "revert", "project", "0").exit_code == 2
    assert cairn(served, "memory", "frobnicate").exit_code == 2
    no_token = cairn(served, "memory", "list", CAIRN_TOKEN="")
    assert no_token.exit_code == 2
    assert no_token.stderr == "cairn: CAIRN_SERVER_URL is set but CAIRN_TOKEN is not; set both\n"


def test_an_unreachable_server_is_2_and_a_refused_token_3_on_one_line(
    served: Served, repo: Path
) -> None:
    result = cairn(served, "memory", "list", CAIRN_SERVER_URL="http://127.0.0.1:9")
    assert result.exit_code == 2
    assert result.stderr == (
        "cairn: cannot reach the Cairn server at http://127.0.0.1:9: connection refused\n"
    )
    wrong_token = cairn(served, "memory", "list", CAIRN_TOKEN="wrong")
    assert (wrong_token.exit_code, wrong_token.stderr) == (3, "cairn: invalid or missing token\n")


# ---------------------------------------------------------------- context


def test_context_prints_each_section_with_tokens_and_the_budget(served: Served, repo: Path) -> None:
    none_yet = cairn(served, "context")
    assert none_yet.exit_code == 1
    assert none_yet.stderr == "cairn: no conversation yet: start one with `cairn`\n"

    served.fake.set_script(script({"text": "Hello."}))

    async def converse() -> None:
        client = await WireClient.connect(served.url)
        try:
            await client.hello(workspace=detect_workspace(repo, environ=environment()).identity)
            await client.send(UserMessage(text="hi there"))
            await client.recv_until(RunFinished, timeout=20)
        finally:
            await client.close()

    asyncio.run(converse())
    for command in (["context"], ["memory", "context"]):
        result = cairn(served, *command)
        assert result.exit_code == 0, result.output
        rows = lines(result)
        assert rows[0].startswith("Context of cnv_") and "openai/gpt-4o-mini" in rows[0]
        assert rows[1].split() == ["SECTION", "TOKENS", "SHARE"]
        first_words = [row.split()[0] for row in rows[2:-1]]
        for name in ("instructions", "tools", "read", "memory_blocks", "messages"):
            assert name in first_words
        assert rows[-1].startswith("[") and rows[-1].endswith("%)")
        assert " tokens (" in rows[-1]
