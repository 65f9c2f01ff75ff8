"""One executor per tool request: the client whose message started the run runs it; any other
client attached to the conversation only sees it.

Two real sessions against one real server, in two clones of one repository (one agent, one
conversation), as when a TUI sits idle in one clone while a request runs in another.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path

from cairn_client.call_log import CallLog
from cairn_client.policy.types import Approval
from cairn_client.session import ClientSession
from cairn_client.workspace import detect_workspace
from cairn_protocol import ToolRequest
from support.listener import RecordingListener
from support.repos import run_git
from support.servers import Served, call, script
from support.sessions import client_session, welcomed
from support.settings import environment


def clone_of(repo: Path, where: Path) -> Path:
    run_git(repo.parent, "clone", "-q", str(repo), str(where))
    return where


@asynccontextmanager
async def attached(
    served: Served, repo: Path, listener: RecordingListener, data: Path
) -> AsyncIterator[ClientSession]:
    """A session in `repo`, connected and welcomed, closed afterwards."""

    workspace = detect_workspace(repo, environ=environment())
    call_log = CallLog(data / "calls.sqlite3", workspace.root)
    session = client_session(served.url, repo, listener, call_log=call_log)
    async with welcomed(session, listener):
        yield session


async def test_a_request_runs_only_in_the_clone_whose_client_asked(
    served: Served, own_repo: Path, tmp_path: Path
) -> None:
    served.fake.set_script(
        script(
            {"text": "Noting where.", "tool_calls": [call("shell", command="pwd >> where.txt")]},
            {"text": "Noted."},
        )
    )
    clone = clone_of(own_repo, tmp_path / "clone")
    idle = RecordingListener([Approval("once")])  # would say yes, if it were ever asked
    asking = RecordingListener([Approval("once")])
    async with (
        attached(served, clone, idle, tmp_path) as _idle_session,
        attached(served, own_repo, asking, tmp_path) as asking_session,
    ):
        await asking_session.send_user_message("note where you are")
        await asking.wait_for(lambda: bool(asking.of_type("run_finished")))
        await idle.wait_for(lambda: bool(idle.of_type("run_finished")))

    root = detect_workspace(own_repo, environ=environment()).root
    assert (own_repo / "where.txt").read_text() == f"{root}\n"
    assert not (clone / "where.txt").exists()
    assert idle.asked == [] and idle.handled == []  # it saw the request, read-only
    seen = idle.of_type("tool_request")
    assert len(seen) == 1 and isinstance(seen[0], ToolRequest)
    assert [h[2].status for h in asking.handled] == ["ok"]
    assert served.fake.requests[-1].body["messages"][-1]["content"] == "exit code: 0\n(no output)"
