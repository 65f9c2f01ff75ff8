"""The models a provider's server lists (GET /models), fetched once per server and kept, and
whether a model name absent from that list is refused before any request.

Owns `Listing`, when a list is authoritative (llama.cpp's servers serve whatever they loaded
under any name), how a name matches a listed one (aliases of dated snapshots, Ollama's
`:latest`), and the one line naming the closest models the server does list.
"""

from __future__ import annotations

import asyncio
import difflib
import logging
import re
from collections.abc import Awaitable, Callable
from dataclasses import dataclass

log = logging.getLogger(__name__)

# owned_by of llama.cpp's `llama-server` and of llama-cpp-python's server: both answer any
# model name with the model they loaded.
NAME_BLIND_OWNERS = frozenset({"llamacpp", "me"})
# Azure OpenAI lists base models, but requests name deployments: its list says nothing.
DEPLOYMENT_HOSTS = (".azure.com", ".azure-api.net")
# A dated snapshot behind an alias: claude-sonnet-4-5-20250929, gpt-4o-2024-08-06.
SNAPSHOT_SUFFIX = re.compile(r"-(\d{8}|\d{4}-\d{2}-\d{2})$")
SUGGESTIONS = 4


@dataclass(frozen=True)
class Listing:
    """What GET /models of `vendor` at `base_url` answered: the model ids and the `owned_by`
    values (Anthropic's list has none); `refused_key` is the provider's words when it refused
    the key (401)."""

    vendor: str
    base_url: str
    ids: tuple[str, ...] = ()
    owners: frozenset[str] = frozenset()
    refused_key: str | None = None

    @property
    def authoritative(self) -> bool:
        """Whether a name this list lacks is one the server refuses: a non-empty list from a
        server that checks names (not llama.cpp's, not Azure's deployments)."""
        host_lists_deployments = any(host in self.base_url for host in DEPLOYMENT_HOSTS)
        name_blind = bool(self.owners & NAME_BLIND_OWNERS)
        return bool(self.ids) and not name_blind and not host_lists_deployments


def is_listed(name: str, ids: tuple[str, ...]) -> bool:
    """Whether the server answers to `name`: listed, or an alias the APIs accept unlisted
    (a dated snapshot's undated name, `-latest`, Ollama's implicit `:latest` tag)."""
    if name in ids or f"{name}:latest" in ids or name.endswith("-latest"):
        return True
    return any(SNAPSHOT_SUFFIX.sub("", listed) == name for listed in ids)


def closest(name: str, ids: tuple[str, ...]) -> list[str]:
    """A few listed ids, the closest to `name` first."""
    ranked = difflib.get_close_matches(name, ids, n=SUGGESTIONS, cutoff=0.0)
    return ranked or list(ids[:SUGGESTIONS])


def not_offered(spec: str, listing: Listing | None) -> str | None:
    """Why the model `spec` ("openai/gpt-x") cannot run there, in one line, or None: the key
    was refused, or an authoritative list lacks the name. No list (it could not be fetched):
    None, the first request will tell."""
    if listing is None:
        return None
    if listing.refused_key is not None:
        return listing.refused_key
    prefix, _, name = spec.partition("/")
    if not listing.authoritative or is_listed(name, listing.ids):
        return None
    offered = ", ".join(f"{prefix}/{model}" for model in closest(name, listing.ids))
    return (
        f"{listing.vendor} at {listing.base_url} has no model {name!r} ({spec}); it lists {offered}"
        f"{', …' if len(listing.ids) > SUGGESTIONS else ''}"
    )


Fetch = Callable[[], Awaitable[Listing | None]]


class SharedListing:
    """One server's GET /models, fetched once by whichever client asks first (an unfetchable
    list is kept as None too: the server is asked once per process)."""

    def __init__(self) -> None:
        self._fetched: asyncio.Future[Listing | None] | None = None

    async def get(self, fetch: Fetch) -> Listing | None:
        if self._fetched is None:
            self._fetched = asyncio.ensure_future(unless_broken(fetch))
        return await asyncio.shield(self._fetched)


async def unless_broken(fetch: Fetch) -> Listing | None:
    """The list, or None whatever went wrong: an unreadable list never stops a session."""
    try:
        return await fetch()
    except Exception:  # noqa: BLE001 - the first model request will say what is wrong
        log.warning("the list of models could not be read", exc_info=True)
        return None
