"""`cairn ticket`: from a ticket (or a ticket to resume) to a branch, a session and the flow.

Owns the order of the start (load the ticket, check git, then create anything), choosing
headless or the TUI, and the exit code: 0 a patch, 1 none, 2 a usage error.
"""

from __future__ import annotations

import asyncio
import json
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import TextIO

from cairn_client.headless import session_result
from cairn_client.launch import Launch, LaunchError, prepare_launch
from cairn_client.policy.settings import SettingsError
from cairn_client.policy.types import ApproveMode
from cairn_client.session import SessionFailed
from cairn_client.ticket import git
from cairn_client.ticket.flow import FinishOptions, TicketActivity, TicketFlow, TicketResult
from cairn_client.ticket.headless import HeadlessTicketDriver, TicketListener
from cairn_client.ticket.sources import TicketError, load_ticket
from cairn_client.ticket.state import (
    StateError,
    TicketState,
    load_state,
    remove_state,
    save_state,
)


class UsageError(Exception):
    """Cannot start: exit code 2 and this one line."""


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
    cwd: Path, request: TicketRequest, *, out: TextIO = sys.stdout, err: TextIO = sys.stderr
) -> int:
    """The whole command; returns the exit code."""
    try:
        started = start_ticket(cwd, request)
    except UsageError as exc:
        print(f"cairn: {exc}", file=err)
        return 2
    state = started.state
    try:
        launch = prepare_launch(started.branch.workdir, approve=_approve(state.approve))
    except (LaunchError, SettingsError) as exc:
        undo_start(started)
        print(f"cairn: {exc}", file=err)
        return 2
    patch_out = Path(state.patch_out) if state.patch_out else None
    options = FinishOptions(patch_out=patch_out, pull_request=state.pull_request)
    if request.headless:
        try:
            return asyncio.run(_headless(launch, started, options, request.as_json, out, err))
        except KeyboardInterrupt:
            print("cairn: interrupted; continue with cairn ticket --resume", file=err)
            return 1
    from cairn_client.ticket.tui import run_ticket_tui

    return run_ticket_tui(launch, started, options)


def start_ticket(cwd: Path, request: TicketRequest) -> Started:
    """Load the ticket and make its branch, or find the ticket to resume; UsageError if
    either cannot be done (and then nothing was created)."""
    try:
        if request.resume:
            state = load_state(cwd, request.resume_slug)
            _keep_flags(state, request)
            return Started(state, git.open_branch(cwd, state.branch), created=False)
        if request.source is None:
            raise UsageError("name a ticket: cairn ticket FILE|-|owner/repo#N|URL|KEY-N")
        ticket = load_ticket(request.source, cwd=cwd)
        branch = git.start_branch(
            cwd, ticket.branch_slug, worktree=request.worktree, allow_dirty=request.allow_dirty
        )
    except (TicketError, git.GitError, StateError) as exc:
        raise UsageError(str(exc)) from None
    state = TicketState(
        ticket=ticket,
        branch=branch.name,
        workdir=str(branch.workdir),
        base_commit=branch.base_commit,
        base_branch=branch.base_branch,
        worktree=branch.worktree,
    )
    _keep_flags(state, request)
    save_state(branch.repo_root, state)
    return Started(state, branch, created=True)


def _keep_flags(state: TicketState, request: TicketRequest) -> None:
    """The flags given now, else (on a resume) those the ticket was started with."""
    state.approve = request.approve or state.approve
    state.patch_out = str(request.patch_out) if request.patch_out else state.patch_out
    state.pull_request = request.pull_request or state.pull_request


def _approve(value: str | None) -> ApproveMode | None:
    return value if value in ("none", "edits", "all") else None  # type: ignore[return-value]


def undo_start(started: Started) -> None:
    """Take back the branch (or worktree) and state of a ticket that could not start."""
    if started.created:
        git.discard_branch(started.branch)
        remove_state(started.branch.repo_root, started.state.ticket.branch_slug)


async def _headless(
    launch: Launch,
    started: Started,
    options: FinishOptions,
    as_json: bool,
    out: TextIO,
    err: TextIO,
) -> int:
    activity = TicketActivity()
    # With --json, stdout carries only the result; the agent's text goes to stderr.
    listener = TicketListener(activity, out=err if as_json else out, err=err)
    conversation = started.state.conversation_id or "new"
    session = launch.session(listener, conversation)
    runner = asyncio.create_task(session.run())
    try:
        welcome = await session_result(listener.welcome, runner)
        if welcome.model is None:
            undo_start(started)
            print(f"cairn: {welcome.model_problem or 'no model is configured'}", file=err)
            return 2
        driver = HeadlessTicketDriver(session, listener, runner, welcome, err=err)
        flow = TicketFlow(started.state, started.branch, driver, activity, options)
        result = await flow.run()
    except SessionFailed as exc:
        print(f"cairn: {exc}; continue later with cairn ticket --resume", file=err)
        return 1
    finally:
        await session.close()
        runner.cancel()
        await asyncio.gather(runner, return_exceptions=True)
        await launch.shutdown()
    _print_result(result, as_json, out, err)
    return result.exit_code


def _print_result(result: TicketResult, as_json: bool, out: TextIO, err: TextIO) -> None:
    if as_json:
        print(json.dumps(result.to_json(), indent=2), file=out, flush=True)
        return
    print("\n".join(result.summary_lines()), file=out, flush=True)
