"""Where a ticket stands and what happened in it, kept on disk so `--resume` can continue it.

Owns the state file in the repository's git folder (shared by its worktrees, never in a
working tree), the ticket's activity (tests, approvals, files, usage) and finding the
ticket to resume.
"""

from __future__ import annotations

import json
import os
import re
import tempfile
from collections.abc import Mapping
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, Literal

from cairn_protocol.messages import Usage
from cairn_protocol.tools import ShellArgs

from cairn_client.errors import CairnError, ExitCode
from cairn_client.policy.types import ApproveMode
from cairn_client.ticket import git
from cairn_client.ticket.sources import Ticket
from cairn_client.tools.base import PreparedCall, ToolOutcome

# plan: planning or reviewing; implement: the agent works; finish: its work is done and only
# the commit (and patch file, pull request) remain; done.
Phase = Literal["plan", "implement", "finish", "done"]
STATE_FOLDER = ("cairn", "tickets")
# A command that runs a project's tests, as the first word(s) of one piece of a command line.
TEST_COMMAND = re.compile(
    r"(?:^|[;&|(]\s*)(?:\w+=\S*\s+)*(?:(?:uv|poetry|pipenv|hatch|pdm|rye) run\s+)?"
    r"(?:python3?\s+-m\s+|npx\s+)?"
    r"(?:pytest|py\.test|tox|nox|unittest|jest|vitest|rspec|phpunit|ctest"
    r"|(?:npm|pnpm|yarn|bun)(?: run)? test|go test|cargo test|mvn(?: -\S+)* (?:test|verify)"
    r"|\./gradlew test|gradle test|make (?:test|check)|dotnet test|mix test)(?:\s|$)"
)
SuiteStatus = Literal["passed", "failed", "not run"]
_SUITE_STATUS: dict[str, SuiteStatus] = {"ok": "passed", "error": "failed", "denied": "not run"}


class StateError(CairnError):
    """No ticket to resume, or its state file cannot be read; the message says what to do."""

    exit_code = ExitCode.USAGE


@dataclass
class SuiteRun:
    """One run of the project's tests by the agent."""

    command: str
    status: SuiteStatus
    detail: str | None = None


@dataclass
class TicketActivity:
    """What happened during the ticket, over all its sessions: for the summary and commit."""

    approvals_asked: int = 0
    approvals_given: int = 0
    tests: list[SuiteRun] = field(default_factory=list)
    files_written: list[str] = field(default_factory=list)  # by edit, write, apply_patch
    usage: Usage = field(default_factory=Usage)

    def approval_answered(self, given: bool) -> None:
        self.approvals_asked += 1
        self.approvals_given += given

    def tool_handled(self, prepared: PreparedCall, outcome: ToolOutcome) -> None:
        args = prepared.args
        if isinstance(args, ShellArgs) and TEST_COMMAND.search(args.command.strip()):
            status = _SUITE_STATUS[outcome.status]
            self.tests.append(SuiteRun(args.command, status, outcome.reason))
        for path in outcome.changed_files:
            if path not in self.files_written:
                self.files_written.append(path)

    def to_json(self) -> dict[str, Any]:
        return {**asdict(self), "usage": self.usage.model_dump()}

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> TicketActivity:
        return cls(
            approvals_asked=data["approvals_asked"],
            approvals_given=data["approvals_given"],
            tests=[SuiteRun(**test) for test in data["tests"]],
            files_written=list(data["files_written"]),
            usage=Usage(**data["usage"]),
        )


@dataclass
class TicketState:
    """One ticket's progress: the ticket, its branch, its conversation and the phase."""

    ticket: Ticket
    branch: str
    workdir: str
    base_commit: str
    base_branch: str
    worktree: bool
    phase: Phase = "plan"
    conversation_id: str | None = None
    proposed_plan: str | None = None  # the agent's latest plan, waiting for the review
    plan: str | None = None  # the approved plan
    implement_started: bool = False
    preexisting: list[str] = field(default_factory=list)  # dirty at the start: not the ticket's
    run_ids: list[str] = field(default_factory=list)
    activity: TicketActivity = field(default_factory=TicketActivity)
    commit: str | None = None
    pr_url: str | None = None
    # The flags it was started with, which a resume keeps unless it gives its own.
    approve: ApproveMode | None = None
    patch_out: str | None = None
    pull_request: bool = False

    def to_json(self) -> dict[str, Any]:
        return {**asdict(self), "activity": self.activity.to_json()}

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> TicketState:
        return cls(
            **{
                **data,
                "ticket": Ticket(**data["ticket"]),
                "activity": TicketActivity.from_json(data["activity"]),
            }
        )


def state_folder(repo: Path, environ: Mapping[str, str]) -> Path:
    """The repository's common git folder (one for all its worktrees) / cairn / tickets;
    `environ` is what git starts from (the client's environment snapshot)."""
    try:
        return git.common_git_dir(repo, environ=environ).joinpath(*STATE_FOLDER)
    except git.GitError as exc:
        raise StateError(str(exc)) from None


def save_state(repo: Path, state: TicketState, *, environ: Mapping[str, str]) -> Path:
    """Write atomically, so a crash leaves the previous state, never half of one."""
    folder = state_folder(repo, environ)
    folder.mkdir(parents=True, exist_ok=True)
    target = folder / f"{state.ticket.branch_slug}.json"
    handle, temporary = tempfile.mkstemp(dir=folder, prefix=".state-")
    with os.fdopen(handle, "w", encoding="utf-8") as out:
        json.dump(state.to_json(), out, indent=2)
    os.replace(temporary, target)
    return target


def remove_state(repo: Path, slug: str, *, environ: Mapping[str, str]) -> None:
    (state_folder(repo, environ) / f"{slug}.json").unlink(missing_ok=True)


def load_state(repo: Path, slug: str | None = None, *, environ: Mapping[str, str]) -> TicketState:
    """The ticket `slug`, or the most recently touched one that is not done."""
    folder = state_folder(repo, environ)
    files = sorted(folder.glob("*.json"), key=lambda p: p.stat().st_mtime, reverse=True)
    if slug is not None:
        files = [p for p in files if p.stem == slug.removeprefix("cairn/")]
    for path in files:
        state = _read(path)
        if slug is not None or state.phase != "done":
            return state
    wanted = f"ticket {slug!r}" if slug else "unfinished ticket"
    raise StateError(
        f"no {wanted} to resume in this repository; start one with cairn ticket SOURCE"
    )


def _read(path: Path) -> TicketState:
    try:
        return TicketState.from_json(json.loads(path.read_text(encoding="utf-8")))
    except (OSError, ValueError, TypeError, KeyError) as exc:
        raise StateError(
            f"cannot read {path}: {exc}; delete that file to forget the ticket"
        ) from None
