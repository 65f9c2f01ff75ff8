"""`cairn ticket`: from a ticket (or a ticket to resume) to a branch, a session and the flow.

Owns the order of the start (load the ticket, check git, then create anything), choosing
headless or the TUI, and the exit code: 0 a patch, 1 none, 2 a usage error.
"""

from __future__ import annotations

import asyncio
import json
import sys
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import TextIO

from cairn_client.config import ClientSettings, TicketSettings
from cairn_client.errors import CairnError, ExitCode, UsageError
from cairn_client.headless import session_result
from cairn_client.launch import Launch, prepare_launch
from cairn_client.models import unusable_model
from cairn_client.policy.types import ApproveMode, Mode
from cairn_client.session import SessionFailed
from cairn_client.ticket import git
from cairn_client.ticket.flow import FinishOptions, TicketFlow, TicketResult
from cairn_client.ticket.github import parse_github_remote
from cairn_client.ticket.headless import HeadlessTicketDriver, TicketListener
from cairn_client.ticket.sources import Ticket, TicketError, load_ticket
from cairn_client.ticket.state import (
    StateError,
    TicketState,
    load_state,
    remove_state,
    save_state,
)


@dataclass(frozen=True)
class TicketRequest:
    """What the command line asked for."""

    source: str | None
    resume: bool = False
    resume_slug: str | None = None
    worktree: bool = False
    allow_dirty: bool = False
    patch_out: Path | None = None
    pull_request: bool = False
    approve: ApproveMode | None = None
    headless: bool = False
    as_json: bool = False


@dataclass
class Started:
    """A ticket ready to run: its state and its branch, and whether they were just made."""

    state: TicketState
    branch: git.TicketBranch
    created: bool


def run_ticket(
    cwd: Path,
    request: TicketRequest,
    settings: ClientSettings,
    run_in_tui: Callable[[TicketRun], int],
    *,
    out: TextIO = sys.stdout,
    err: TextIO = sys.stderr,
) -> int:
    """The whole command; returns the exit code. `run_in_tui` runs it in the app (the TUI
    imports tickets, never the other way round)."""
    report = Report(request.as_json, out, err)
    try:
        started = start_ticket(cwd, request, settings.tickets, environ=settings.process_env)
    except UsageError as exc:
        return report.failure(exc.message, exc.exit_code)
    state = started.state
    try:
        launch = prepare_launch(started.branch.workdir, settings=settings, approve=state.approve)
    except CairnError as exc:  # settings, or the server cannot be reached or started
        undo_start(started)
        return report.failure(exc.message, exc.exit_code)
    configured_mode = launch.policy.mode
    if state.phase == "plan":  # read-only from the first request a resumed session answers
        launch.policy.set_mode("plan")
    patch_out = Path(state.patch_out) if state.patch_out else None
    options = FinishOptions(patch_out, state.pull_request, settings.tickets)
    ticket = TicketRun(started, launch, options, configured_mode, report)
    if not request.headless:
        return run_in_tui(ticket)
    try:
        return asyncio.run(_headless(ticket))
    except KeyboardInterrupt:
        return report.failure("interrupted; continue with cairn ticket --resume", ExitCode.FAILED)


@dataclass(frozen=True)
class TicketRun:
    """A ticket ready for a front end: where it stands, its server, and how it ends."""

    started: Started
    launch: Launch
    options: FinishOptions
    configured_mode: Mode  # the mode outside the plan phase
    report: Report


@dataclass(frozen=True)
class Report:
    """Where the command's last words go: a summary, or with --json one JSON object."""

    as_json: bool
    out: TextIO
    err: TextIO

    def result(self, result: TicketResult) -> int:
        if self.as_json:
            print(json.dumps(result.to_json(), indent=2), file=self.out, flush=True)
        else:
            print("\n".join(result.summary_lines()), file=self.out, flush=True)
        return result.exit_code

    def failure(self, message: str, exit_code: int) -> int:
        print(f"cairn: {message}", file=self.err, flush=True)
        if self.as_json:
            failure = {"outcome": "error", "message": message, "exit_code": exit_code}
            print(json.dumps(failure), file=self.out, flush=True)
        return exit_code


def start_ticket(
    cwd: Path,
    request: TicketRequest,
    tickets: TicketSettings | None = None,
    *,
    environ: Mapping[str, str],
) -> Started:
    """Load the ticket and make its branch, or find the ticket to resume; UsageError if
    either cannot be done (and then nothing was created). `tickets`: the GitHub and Linear
    settings (none: only files and stdin can be read); `environ`: what git starts from."""
    tickets = tickets or TicketSettings()
    try:
        if request.resume:
            state = load_state(cwd, request.resume_slug, environ=environ)
            _keep_flags(state, request)
            _check_finish_options(cwd, state, tickets, environ)
            branch = git.open_branch(cwd, state.branch, environ=environ)
            return Started(state, branch, created=False)
        if request.source is None:
            raise UsageError("name a ticket: cairn ticket FILE|-|owner/repo#N|URL|KEY-N")
        ticket = load_ticket(request.source, settings=tickets, cwd=cwd)
        state = _new_state(ticket, request)
        _check_finish_options(cwd, state, tickets, environ)
        keeps_changes = request.allow_dirty and not request.worktree
        preexisting = git.dirty_paths(cwd, environ=environ) if keeps_changes else []
        branch = git.start_branch(
            cwd,
            ticket.branch_slug,
            worktree=request.worktree,
            allow_dirty=request.allow_dirty,
            ignore_untracked=_inside(cwd, request.source, environ),
            environ=environ,
        )
    except (TicketError, git.GitError, StateError) as exc:
        raise UsageError(str(exc)) from None
    state.branch, state.workdir, state.worktree = branch.name, str(branch.workdir), branch.worktree
    state.base_commit, state.base_branch = branch.base_commit, branch.base_branch
    state.preexisting = preexisting
    save_state(branch.repo_root, state, environ=environ)
    return Started(state, branch, created=True)


def _new_state(ticket: Ticket, request: TicketRequest) -> TicketState:
    state = TicketState(
        ticket, branch="", workdir="", base_commit="", base_branch="", worktree=False
    )
    _keep_flags(state, request)
    return state


def _keep_flags(state: TicketState, request: TicketRequest) -> None:
    """The flags given now, else (on a resume) those the ticket was started with."""
    state.approve = request.approve or state.approve
    state.patch_out = str(request.patch_out) if request.patch_out else state.patch_out
    state.pull_request = request.pull_request or state.pull_request


def _check_finish_options(
    repo: Path, state: TicketState, tickets: TicketSettings, environ: Mapping[str, str]
) -> None:
    """What the end of the ticket will need, checked before any work is done."""
    if state.patch_out and not Path(state.patch_out).parent.is_dir():
        raise UsageError(f"--patch-out: folder {Path(state.patch_out).parent} does not exist")
    if not state.pull_request:
        return
    if not tickets.github_token:
        raise UsageError("--pr needs GITHUB_TOKEN (a token that may push and open pull requests)")
    origin = git.origin_url(repo, environ=environ)
    if origin is None:
        raise UsageError("--pr needs a remote named origin to push the branch to")
    if parse_github_remote(origin) is None and state.ticket.github_repo is None:
        raise UsageError(f"--pr: origin ({origin}) is not a GitHub repository")


def _inside(repo: Path, source: str, environ: Mapping[str, str]) -> list[str]:
    """The ticket file as a repository path, when the user wrote it into the repository."""
    path = (repo / source).resolve()
    try:
        return (
            [path.relative_to(git.repo_root(repo, environ=environ)).as_posix()]
            if path.is_file()
            else []
        )
    except (ValueError, git.GitError):
        return []


def undo_start(started: Started) -> None:
    """Take back the branch (or worktree) and state of a ticket that could not start."""
    if started.created:
        git.discard_branch(started.branch)
        branch = started.branch
        remove_state(branch.repo_root, started.state.ticket.branch_slug, environ=branch.environ)


async def _headless(ticket: TicketRun) -> int:
    started, report = ticket.started, ticket.report
    # With --json, stdout carries only the result; the agent's text goes to stderr.
    agent_out = report.err if report.as_json else report.out
    listener = TicketListener(started.state.activity, out=agent_out, err=report.err)
    session = ticket.launch.session(listener, started.state.conversation_id or "new")
    runner = asyncio.create_task(session.run())
    try:
        try:
            welcome = await session_result(listener.welcome, runner)
        except SessionFailed as exc:
            undo_start(started)
            return report.failure(exc.message, exc.exit_code)
        unusable = unusable_model(welcome)
        if unusable is not None:
            undo_start(started)
            return report.failure(str(unusable), unusable.exit_code)
        driver = HeadlessTicketDriver(
            session, listener, runner, welcome, ticket.configured_mode, err=report.err
        )
        result = await TicketFlow(started.state, started.branch, driver, ticket.options).run()
    except SessionFailed as exc:
        return report.failure(f"{exc}; continue later with cairn ticket --resume", exc.exit_code)
    finally:
        await session.close()
        runner.cancel()
        await asyncio.gather(runner, return_exceptions=True)
        await ticket.launch.shutdown()
    return report.result(result)
