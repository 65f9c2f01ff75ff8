"""How a `cairn` process reaches its server and builds its session.

Owns choosing remote or embedded, and wiring workspace, policy and listener into a session.
"""

from __future__ import annotations

import asyncio
import sys
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path

from cairn_client.call_log import CallLog
from cairn_client.config import ClientSettings
from cairn_client.embedded import EmbeddedServer
from cairn_client.errors import CairnError, ExitCode
from cairn_client.listener import SessionListener
from cairn_client.local_server import LocalServer, Notify
from cairn_client.mcp.config import McpSetup, load_mcp_setup
from cairn_client.mcp.servers import McpServers
from cairn_client.policy.policy import Policy
from cairn_client.policy.settings import load_settings, user_config_dir
from cairn_client.policy.types import ApproveMode
from cairn_client.private_files import private_dir
from cairn_client.prompt_history import PromptHistory
from cairn_client.session import ClientSession, Endpoint
from cairn_client.tools.sandbox import Sandbox
from cairn_client.workspace import Workspace, detect_workspace, with_earlier_keys


class LaunchError(CairnError, RuntimeError):
    """Configuration that cannot work; the message tells the user what to change."""

    exit_code = ExitCode.USAGE


@dataclass
class Launch:
    """Everything a front end needs to start sessions in one repository."""

    workspace: Workspace
    policy: Policy
    endpoint: Endpoint
    embedded: EmbeddedServer | None
    call_log: CallLog
    local: LocalServer | None = None
    # What the launch had to say (the local server restarted), for the front end to show.
    notices: list[str] = field(default_factory=list)
    # What was typed at the TUI's prompt in this workspace before (up/down browse it).
    history: PromptHistory = field(default_factory=PromptHistory)
    # The MCP servers a session starts (and those not trusted yet), and where their logs go.
    mcp: McpSetup = field(default_factory=McpSetup)
    mcp_logs: Path = Path(".")

    def session(
        self, listener: SessionListener, conversation: str = "latest", *, interactive: bool = False
    ) -> ClientSession:
        """A session for `conversation` ("reopen", "latest", "new" or an id, as in hello);
        `interactive` for the TUI: the conversation it opens is the one "reopen" names."""
        return ClientSession(
            self.endpoint,
            self.workspace,
            self.policy,
            listener,
            conversation,
            call_log=self.call_log,
            interactive=interactive,
            notes=self.notices,
            mcp=self._mcp_servers(),
        )

    def _mcp_servers(self) -> McpServers | None:
        if not self.mcp.servers and not self.mcp.untrusted:
            return None
        return McpServers(self.mcp, self.workspace.root, self.mcp_logs)

    async def shutdown(self) -> None:
        """Stop a private server; the shared local server stays up for the next `cairn`."""
        if self.embedded is not None:
            await self.embedded.stop()
        if self.local is not None:
            self.local.abandon()

    def shutdown_now(self) -> None:
        """For when no event loop is left (after the TUI exits)."""
        if self.embedded is not None:
            self.embedded.terminate()
        if self.local is not None:
            self.local.abandon()


def say(line: str) -> None:
    """A notice for the person (the local server restarted): one line on stderr."""
    print(f"cairn: {line}", file=sys.stderr, flush=True)


def prepare_launch(
    cwd: Path,
    *,
    settings: ClientSettings,
    approve: ApproveMode | None = None,
    server_env: Mapping[str, str] | None = None,
    notify: Notify | None = say,
) -> Launch:
    """Wire the session for `cwd` with the settings read at start: the remote server if one is
    set, else the shared local server (found or started now), or with `server_env` (variables
    on top of the client's environment) a private server that ends with this process.
    `notify` hears what a person should know (the local server restarted); None keeps it in
    `Launch.notices` (the TUI shows them as it opens)."""
    private_dir(settings.data_dir)  # also tightens what an older cairn left readable
    if settings.server_url and not settings.token:
        raise LaunchError("CAIRN_SERVER_URL is set but CAIRN_TOKEN is not; set both")
    notices: list[str] = []
    local: LocalServer | None = None
    if not settings.server_url and server_env is None:
        local = LocalServer(
            settings.data_dir,
            environ=settings.process_env,
            database_url=settings.database_url,
            idle_exit_s=settings.idle_exit_s,
            notify=notify or notices.append,
        )
        local.find_or_start()  # first: a new one boots while the client finishes starting
    try:
        workspace = with_earlier_keys(
            detect_workspace(cwd, environ=settings.process_env),
            settings.data_dir,
            environ=settings.process_env,
        )
        policy_settings = load_settings(workspace.root)
        mcp_setup = load_mcp_setup(workspace.root, settings.data_dir)
        # The local server's data (its token) and Cairn's settings are never shown to commands.
        hidden = [settings.data_dir, user_config_dir()]
        sandbox = Sandbox.detect(policy_settings.sandbox, hidden, environ=settings.process_env)
        policy = Policy(policy_settings, approve_override=approve, sandbox=sandbox)
        call_log = CallLog.in_data_dir(settings.data_dir, workspace.root)
        history = PromptHistory.in_data_dir(settings.data_dir, workspace.root)
    except BaseException:
        if local is not None:  # a server started for nothing does not linger
            local.abandon()
        raise
    launch = _launch_for(settings, server_env, workspace, policy, call_log, local, notices, history)
    launch.mcp, launch.mcp_logs = mcp_setup, settings.data_dir / "mcp"
    return launch


def _launch_for(
    settings: ClientSettings,
    server_env: Mapping[str, str] | None,
    workspace: Workspace,
    policy: Policy,
    call_log: CallLog,
    local: LocalServer | None,
    notices: list[str],
    history: PromptHistory,
) -> Launch:
    if settings.server_url:
        assert settings.token is not None
        url = settings.server_url

        async def remote() -> str:
            return url

        return Launch(
            workspace, policy, Endpoint(settings.token, remote), None, call_log, history=history
        )
    if local is not None:
        endpoint = Endpoint(local.token, local.ensure_running)
        return Launch(workspace, policy, endpoint, None, call_log, local, notices, history)
    embedded = EmbeddedServer(
        settings.data_dir,
        server_env,
        environ=settings.process_env,
        database_url=settings.database_url,
    )
    embedded.spawn()  # boots while the client finishes starting
    endpoint = Endpoint(embedded.token, embedded.ensure_running)
    return Launch(workspace, policy, endpoint, embedded, call_log, history=history)


def choose_model_now(launch: Launch, name: str) -> None:
    """`--model NAME`: give the workspace's agent `name` before a session opens (the server
    keeps it); ModelRefused, one line naming what the server runs, when it cannot run it."""
    from cairn_client.api import CairnApi
    from cairn_client.models import choose_model

    async def choose() -> None:
        async with CairnApi(launch.endpoint.resolve, launch.endpoint.token) as api:
            await choose_model(api, launch.workspace.identity, name)

    try:
        asyncio.run(choose())
    except BaseException:
        launch.shutdown_now()
        raise


def run_blocking_headless(
    launch: Launch, prompt: str, *, as_json: bool, resume: bool, conversation: str | None = None
) -> int:
    """`cairn -p`: a new conversation of its own, unless `resume` (-c: the latest one) or
    `conversation` (--resume ID); never the TUI's, so the TUI reopens what it had open."""
    from cairn_client.commands import compact_focus
    from cairn_client.headless import HeadlessListener, run_headless

    # /compact compacts the conversation there is, so it always continues the latest one.
    continues = resume or compact_focus(prompt) is not None
    wanted = conversation or ("latest" if continues else "new")

    async def main() -> int:
        listener = HeadlessListener(as_json=as_json)
        session = launch.session(listener, wanted)
        try:
            return await run_headless(session, listener, prompt)
        finally:
            await launch.shutdown()

    return asyncio.run(main())
