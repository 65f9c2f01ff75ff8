"""Workspace identity: what names a codebase on the server.

Owns the identity model and the normalisation of origin URLs; computing it from a
checkout (git calls) lives in the client.
"""

from __future__ import annotations

import re
from typing import Annotated

from pydantic import BaseModel, ConfigDict, Field


class WorkspaceIdentity(BaseModel):
    """A codebase, independent of where it is checked out.

    Two clones of one repository share `root_commit` (and usually `origin`), so they
    are the same codebase; `display_name` and `path` are only shown, never matched. A
    repository's first commit changes its key; `moved_from` carries the keys it had before.
    """

    model_config = ConfigDict(extra="forbid")

    root_commit: str | None = Field(description="Hash of the repository's first commit.")
    origin: str | None = Field(default=None, description="Normalised origin URL.")
    display_name: str = Field(description="Short name to show, e.g. the folder name.")
    path: str = Field(description="Absolute path of the checkout on the client (shown only).")
    moved_from: list[Annotated[str, Field(min_length=1, max_length=4096)]] = Field(
        default_factory=list,
        max_length=8,
        description="Keys (`path:…`, `origin:…`) this checkout was known by before its first "
        "commit. When `key` names no agent yet, the agent still under the first of these moves "
        "to `key`, with its memory and conversations; the old key stays an alias of it.",
    )

    @property
    def key(self) -> str:
        """The stable key the server files the codebase under."""
        if self.root_commit:
            return f"git:{self.root_commit}"
        if self.origin:
            return f"origin:{self.origin}"
        return f"path:{self.path}"


_SCP_LIKE = re.compile(r"^(?:(?P<user>[^@/]+)@)?(?P<host>[^:/]+):(?P<path>(?!//).+)$")


def normalise_origin(url: str) -> str:
    """Reduce the spellings of one remote to one form: host/owner/repo, lower-cased host.

    `git@github.com:Owner/Repo.git`, `https://github.com/Owner/Repo`, and
    `ssh://git@github.com/Owner/Repo.git/` all become `github.com/Owner/Repo`.
    """
    text = url.strip()
    scheme = re.match(r"^[a-zA-Z][a-zA-Z0-9+.-]*://", text)
    if scheme:
        rest = text[scheme.end() :]
        if "@" in rest.split("/", 1)[0]:
            rest = rest.split("@", 1)[1]
        host, _, path = rest.partition("/")
        host = host.split(":", 1)[0] if not host.startswith("[") else host
    elif (m := _SCP_LIKE.match(text)) and not text.startswith("/"):
        host, path = m.group("host"), m.group("path")
    else:
        return text.rstrip("/").removesuffix(".git")
    path = path.strip("/").removesuffix(".git").strip("/")
    return f"{host.lower()}/{path}"
