"""The real `cairn -p`, `-c`, `--resume ID` and `cairn conversations list` against a server and
a fake model: each -p run has its own conversation unless continued, `-c` and `--resume ID`
continue with the earlier messages, the list shows titles and counts, and none of it changes
the conversation the TUI reopens.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from cairn_client.workspace import detect_workspace
from cairn_fakes.runner import FakeModelServer
from cairn_protocol import RunFinished, UserMessage, Welcome
from support.cli import cairn
from support.servers import TEST_TOKEN, cairn_server, script, sqlite_url
from support.settings import environment
from support.wire import WireClient


async def tui_hello(url: str, repo: Path, text: str | None = None) -> Welcome:
    """What the TUI does at start: reopen its conversation (and say `text` in it)."""
    client = await WireClient.connect(url)
    identity = detect_workspace(repo, environ=environment()).identity
    welcome = await client.hello(workspace=identity, conversation="reopen", interactive=True)
    assert isinstance(welcome, Welcome), welcome
    if text is not None:
        await client.send(UserMessage(text=text))
        await client.recv_until(RunFinished)
    await client.close()
    return welcome


def turns(fake: FakeModelServer) -> list[Any]:
    """The last request's messages after the system prompt, as their text."""
    return [m["content"] for m in fake.requests[-1].body["messages"][1:]]


async def test_print_mode_conversations_continue_resume_and_list(
    tmp_path: Path, repo: Path, fake_model: FakeModelServer
) -> None:
    fake_model.set_script(
        script(
            {"text": "In the TUI."},
            {"text": "It uses make."},
            {"text": "make check."},
            {"text": "Back in the TUI's conversation."},
        )
    )
    data_dir = tmp_path / "data"
    with cairn_server(sqlite_url(tmp_path), fake_model) as server:
        env = {"CAIRN_SERVER_URL": server.url, "CAIRN_TOKEN": TEST_TOKEN}
        tui = (await tui_hello(server.url, repo, "Work started in the TUI")).conversation_id

        built = cairn(repo, data_dir, "-p", "How is it built?\nIn detail.", env=env)
        assert built.returncode == 0, built.stderr
        assert turns(fake_model)[-1] == "How is it built?\nIn detail."  # its own conversation
        tested = cairn(repo, data_dir, "-p", "And the tests?", "-c", env=env)
        assert tested.returncode == 0, tested.stderr
        assert turns(fake_model)[-3:-1] == ["How is it built?\nIn detail.", "It uses make."]

        listed = cairn(repo, data_dir, "conversations", "list", "--json", env=env)
        assert listed.returncode == 0, listed.stderr
        rows = json.loads(listed.stdout)
        assert [(row["title"], row["message_count"]) for row in rows] == [
            ("How is it built?", 4),
            ("Work started in the TUI", 2),
        ]
        assert rows[1]["id"] == tui and rows[0]["last_activity"] > rows[1]["last_activity"]
        table = cairn(repo, data_dir, "conversations", "list", env=env)
        assert table.returncode == 0, table.stderr
        assert "How is it built?" in table.stdout and tui in table.stdout, table.stdout

        # The -p runs did not take over what the TUI reopens.
        assert (await tui_hello(server.url, repo)).conversation_id == tui

        resumed = cairn(repo, data_dir, "-p", "Where were we?", "--resume", tui, env=env)
        assert resumed.returncode == 0, resumed.stderr
        earlier = ["Work started in the TUI", "In the TUI.", "Where were we?"]
        assert turns(fake_model)[-3:] == earlier
        assert "Back in the TUI's conversation." in resumed.stdout

        bare = cairn(repo, data_dir, "-p", "hi", "--resume", env=env)
        assert bare.returncode == 2
        assert "--resume needs a conversation id" in bare.stderr
        unknown = cairn(repo, data_dir, "-p", "hi", "--resume", "cnv_nope", env=env)
        assert unknown.returncode != 0
        assert "no conversation 'cnv_nope'" in unknown.stderr
        assert len(unknown.stderr.strip().splitlines()) == 1
