"""A TUI driven by a scripted session that calls the listener like the real one, for Pilot tests.

Owns the scripted session, the events and prepared calls it plays, and starting and settling
the app; shared by the TUI behaviour, snapshot and memory tests.
"""

from __future__ import annotations

import asyncio
import difflib
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

from cairn_client.listener import SessionListener
from cairn_client.mentions import Mentions
from cairn_client.policy.policy import Policy
from cairn_client.policy.settings import PolicySettings
from cairn_client.policy.types import Approval, Mode
from cairn_client.tools.base import FileChange, PreparedCall, Preview
from cairn_client.tui.app import CairnApp
from cairn_client.undo import AppliedChange, UndoRefused
from cairn_protocol import ServerFrame
from cairn_protocol.messages import (
    HistoryItem,
    RunFinished,
    ToolRequest,
    Usage,
    UserCommand,
    Welcome,
)
from cairn_protocol.tools import EditArgs, GrepArgs, ReadArgs, ShellArgs
from textual.pilot import Pilot
from textual.widgets import Input

from support.settings import policy_for

SIZE = (100, 36)
THIS_CLIENT = "cli_this"


class ScriptedSession:
    """A SessionRunner whose run() connects and welcomes like the real session, then idles.

    Tests play the rest of the server's side by calling `listener` directly, as the real
    session does from its receive loop; what the app asks of the session is recorded.
    """

    def __init__(
        self,
        welcome: Welcome,
        *,
        fail_with: Exception | None = None,
        announce_failure: bool = False,
        policy: Policy | None = None,
    ) -> None:
        self.welcome = welcome
        self.policy = policy
        self.fail_with = fail_with
        self.announce_failure = announce_failure
        self.sent: list[str] = []
        self.commands: list[UserCommand | None] = []
        self.compactions: list[str | None] = []
        self.cancels = 0
        self.switches: list[str] = []
        self.closed = False
        self._listener: CairnApp | None = None
        self._closed = asyncio.Event()

    def start(self, listener: SessionListener) -> ScriptedSession:
        assert isinstance(listener, CairnApp)
        self._listener = listener
        return self

    @property
    def listener(self) -> CairnApp:
        assert self._listener is not None, "the app has not started the session"
        return self._listener

    async def run(self) -> None:
        self.listener.connection_changed("connecting", "connecting to the server")
        if self.fail_with is not None:
            if self.announce_failure:  # as the real session does when the server refuses it
                self.listener.connection_changed("failed", str(self.fail_with))
            raise self.fail_with
        self.listener.connection_changed("connected", "connected")
        self.listener.server_event(self.welcome)
        await self._closed.wait()
        self.listener.connection_changed("closed", "session closed")

    async def send_user_message(self, text: str, command: UserCommand | None = None) -> None:
        self.sent.append(text)
        self.commands.append(command)

    async def compact(self, instructions: str | None = None) -> None:
        self.compactions.append(instructions)

    async def cancel(self) -> None:
        self.cancels += 1

    async def switch_conversation(self, conversation: str) -> None:
        self.switches.append(conversation)

    async def close(self) -> None:
        self.closed = True
        self._closed.set()

    @property
    def mode(self) -> Mode | None:
        return self.policy.mode if self.policy is not None else None

    def set_mode(self, mode: Mode) -> None:
        if self.policy is not None:
            self.policy.set_mode(mode)

    async def undo_last_change(self) -> AppliedChange:
        raise UndoRefused("this scripted session applies no changes")

    def startup_notes(self) -> list[str]:
        return self.policy.startup_notes() if self.policy is not None else []

    @property
    def settings_file(self) -> str:
        return self.policy.settings.user_file_shown if self.policy is not None else ""

    def events(self, *events: ServerFrame) -> None:
        for event in events:
            self.listener.server_event(event)

    def ask(self, prepared: PreparedCall) -> asyncio.Task[Approval]:
        """Ask for approval the way the real session does: from a task of its own, with the
        verdict of a policy (its answer options are what the screen offers)."""
        policy = self.policy or policy_for(
            PolicySettings(user_file=Path("/nonexistent/cairn.toml"))
        )
        verdict = policy.decide(prepared)
        return asyncio.ensure_future(self.listener.ask_approval(prepared, verdict))


def welcome(
    *,
    model: str | None = "gpt-test",
    history: list[HistoryItem] | None = None,
    model_problem: str | None = None,
    pending: list[ToolRequest] | None = None,
    model_not_offered: bool = False,
) -> Welcome:
    return Welcome(
        seq=3,
        agent_id="agent-1",
        conversation_id="conv-1",
        model=model,
        model_problem=model_problem,
        model_not_offered=model_not_offered,
        history=history or [],
        client_id=THIS_CLIENT,
        pending_tool_requests=pending or [],
    )


def scripted_app(
    session_welcome: Welcome | None = None,
    *,
    fail_with: Exception | None = None,
    announce_failure: bool = False,
    policy: Policy | None = None,
    mentions: Mentions | None = None,
) -> tuple[CairnApp, ScriptedSession]:
    """`mentions`: the workspace whose files `@` completes and attaches (none without)."""
    session = ScriptedSession(
        session_welcome or welcome(),
        fail_with=fail_with,
        announce_failure=announce_failure,
        policy=policy,
    )
    return CairnApp(session.start, workspace_name="shop-api", mentions=mentions), session


def edit_call(call_id: str = "call-1", run_id: str = "run-1") -> PreparedCall:
    before = "def total(items):\n    return 1\n"
    after = "def total(items):\n    return sum(item.price for item in items)\n"
    diff = "".join(
        difflib.unified_diff(
            before.splitlines(keepends=True),
            after.splitlines(keepends=True),
            "a/src/app.py",
            "b/src/app.py",
        )
    )
    arguments = {
        "path": "src/app.py",
        "old_string": "    return 1\n",
        "new_string": "    return sum(item.price for item in items)\n",
    }
    request = ToolRequest(seq=7, run_id=run_id, call_id=call_id, tool="edit", arguments=arguments)
    return PreparedCall(
        request=request,
        args=EditArgs.model_validate(arguments),
        preview=Preview(title="Edit src/app.py", kind="diff", body=diff, language="diff"),
        changes=(FileChange("src/app.py", before, after),),
    )


def read_call(call_id: str = "call-r") -> PreparedCall:
    arguments = {"path": "src/app.py"}
    request = ToolRequest(seq=5, run_id="run-1", call_id=call_id, tool="read", arguments=arguments)
    return PreparedCall(
        request=request,
        args=ReadArgs.model_validate(arguments),
        preview=Preview(title="Read src/app.py", kind="info", body="read src/app.py"),
    )


def shell_call(command: str) -> PreparedCall:
    arguments = {"command": command}
    request = ToolRequest(
        seq=6, run_id="run-1", call_id="call-s", tool="shell", arguments=arguments
    )
    return PreparedCall(
        request=request,
        args=ShellArgs.model_validate(arguments),
        preview=Preview(title="Run shell command", kind="command", body=command, language="bash"),
    )


def grep_call(pattern: str) -> PreparedCall:
    arguments = {"pattern": pattern}
    request = ToolRequest(seq=6, run_id="run-1", call_id="call-g", tool="grep", arguments=arguments)
    return PreparedCall(
        request=request,
        args=GrepArgs.model_validate(arguments),
        preview=Preview(title=f"Search for {pattern}", kind="info", body=pattern),
    )


def finished(run_id: str = "run-1", stop_reason: Any = "end_turn", **usage: Any) -> RunFinished:
    return RunFinished(seq=20, run_id=run_id, stop_reason=stop_reason, usage=Usage(**usage))


# ---------------------------------------------------------------- reading what the user sees


async def settle(pilot: Pilot[Any]) -> None:
    """Let posted messages, mounts and the Markdown stream's task all run."""
    for _ in range(3):
        await pilot.pause()
    await pilot.wait_for_scheduled_animations()


@asynccontextmanager
async def scripted_run(
    session_welcome: Welcome | None = None,
    *,
    fail_with: Exception | None = None,
    announce_failure: bool = False,
    policy: Policy | None = None,
    mentions: Mentions | None = None,
) -> AsyncIterator[tuple[CairnApp, ScriptedSession, Pilot[Any]]]:
    """A scripted app running under Pilot, settled after its session has started."""
    app, session = scripted_app(
        session_welcome,
        fail_with=fail_with,
        announce_failure=announce_failure,
        policy=policy,
        mentions=mentions,
    )
    async with app.run_test(size=SIZE) as pilot:
        await settle(pilot)
        yield app, session, pilot


async def asked(
    pilot: Pilot[Any], session: ScriptedSession, prepared: PreparedCall
) -> asyncio.Task[Approval]:
    """Have the session ask for approval of `prepared` and let the screen come up."""
    task = session.ask(prepared)
    await settle(pilot)
    return task


async def type_and_send(pilot: Pilot[Any], text: str) -> None:
    """Fill the prompt and press Enter (key by key typing is covered where it matters)."""
    pilot.app.query_one("#prompt", Input).value = text
    await pilot.press("enter")
    await settle(pilot)


# ---------------------------------------------------------------- chat and streaming
