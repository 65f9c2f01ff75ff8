"""Where a helper's tool requests run: the checkout, or the helper's own git worktree.

Owns checking the branch a request names, making its worktree (with the ticket workflow's git
code: `cairn/<slug>` beside the checkout) at its first request, and the account of what
changed there that the server asks for when the helper ends.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from pathlib import Path

from cairn_protocol import ToolRequest

from cairn_client.ticket.git import BRANCH_PREFIX, GitError, TicketBranch, diff_stat, start_branch

# What a helper's branch may be called: the server names it, and a name is never trusted.
HELPER_BRANCH = re.compile(r"^cairn/helper-[A-Za-z0-9_-]{1,60}$")


class HelperWorktreeError(Exception):
    """The helper's worktree cannot be used; str(exc) is one line for the model."""


class HelperWorktrees:
    """The worktrees this client made for helpers, by branch."""

    def __init__(self, checkout: Path, environ: Mapping[str, str]) -> None:
        self.checkout = checkout
        self.environ = environ
        self._made: dict[str, TicketBranch] = {}

    def root_for(self, request: ToolRequest) -> Path:
        """Where the request's paths are: the checkout, or its helper's worktree (made now
        when it is the first); HelperWorktreeError when that cannot be."""
        helper = request.helper
        if helper is None or helper.worktree_branch is None:
            return self.checkout
        return self._branch(helper.worktree_branch).workdir

    def report(self, request: ToolRequest) -> str:
        """What the helper named in `request` changed: its branch, worktree and diff stat."""
        branch_name = str(request.arguments.get("branch", ""))
        _check(branch_name)
        branch = self._made.get(branch_name)
        if branch is None:
            return f"branch {branch_name} was never made: the helper edited no file"
        return f"branch {branch.name} in {branch.workdir}\n{diff_stat(branch)}"

    def _branch(self, name: str) -> TicketBranch:
        _check(name)
        made = self._made.get(name)
        if made is None:
            try:
                made = start_branch(
                    self.checkout,
                    name.removeprefix(BRANCH_PREFIX),
                    environ=self.environ,
                    worktree=True,
                )
            except GitError as exc:
                raise HelperWorktreeError(f"cannot make the helper's worktree: {exc}") from exc
            self._made[name] = made
        return made


def _check(name: str) -> None:
    if not HELPER_BRANCH.match(name):
        raise HelperWorktreeError(f"not a helper branch name: {name[:80]!r}")
