"""Core memory blocks of an agent and every version of them.

Owns block rows, their history (author, run, tool call), optimistic concurrency, revert, and
that no value is stored before secrets are cut from it.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Sequence
from dataclasses import dataclass, replace

from cairn_protocol.redaction import redact
from cairn_protocol.rest import AuthorKind, BlockAction
from sqlalchemy import func
from sqlalchemy.exc import IntegrityError
from sqlmodel import col, select
from sqlmodel.ext.asyncio.session import AsyncSession

from cairn_server.errors import CairnServerError
from cairn_server.memory.edits import MemoryEditError, check_limit, full_diff
from cairn_server.storage.models import Block, BlockVersion, utcnow
from cairn_server.storage.repository import NotFoundError, Repository, first

LABEL_PATTERN = re.compile(r"^[a-z][a-z0-9_]{0,39}$")
DEFAULT_CHAR_LIMIT = 5000
MAX_CHAR_LIMIT = 100_000


@dataclass(frozen=True)
class BlockDefault:
    label: str
    description: str
    value: str = ""
    char_limit: int = DEFAULT_CHAR_LIMIT


DEFAULT_BLOCKS = (
    BlockDefault(
        "persona",
        "How you work in this repository; refine it as you learn what serves the user.",
        "I am Cairn, a careful coding agent for this repository. I read before I change, "
        "make the smallest correct edit, run the tests the project uses, and say plainly "
        "what I did and what I did not verify.",
        2000,
    ),
    BlockDefault(
        "human",
        "What you have learned about the user: preferences, habits, what to avoid.",
        char_limit=2000,
    ),
    BlockDefault(
        "project",
        "This codebase: architecture, commands to build and test, conventions, pitfalls.",
        char_limit=8000,
    ),
)
DEFAULT_ORDER = {block.label: i for i, block in enumerate(DEFAULT_BLOCKS)}


@dataclass(frozen=True)
class Author:
    """Who made a change and how; stored with the version it creates."""

    kind: AuthorKind
    name: str | None = None
    conversation_id: str | None = None
    run_id: str | None = None
    tool_call_id: str | None = None
    tool: str | None = None
    reason: str | None = None


SYSTEM = Author("system", reason="default block")


class UnknownBlockError(NotFoundError):
    pass


class BlockExistsError(CairnServerError, ValueError):
    pass


class ReadOnlyBlockError(MemoryEditError):
    pass


class StaleBlockError(MemoryEditError):
    """The block changed after the editor last saw it; `current` is what it holds now."""

    def __init__(self, message: str, current: Block) -> None:
        super().__init__(message)
        self.current = current


@dataclass(frozen=True)
class EditResult:
    """A change made: the block after it, its value before, and how many secrets were cut
    from the new value before it was stored."""

    block: Block
    before: str
    secrets_redacted: int = 0


class Blocks(Repository):
    """Every method is one transaction; edits retry on a concurrent change (see `edit`)."""

    async def ensure_defaults(self, agent_id: str) -> None:
        """Create the default blocks an agent is missing (only those never created before)."""
        try:
            await self._create_missing_defaults(agent_id)
        except IntegrityError:
            pass  # a racing connection created them first; the unique index keeps one set

    async def _create_missing_defaults(self, agent_id: str) -> None:
        async with self._transaction() as session:
            existing = set(
                (
                    await session.exec(
                        select(BlockVersion.label).where(BlockVersion.agent_id == agent_id)
                    )
                ).all()
            )
            for default in DEFAULT_BLOCKS:
                if default.label not in existing:
                    block = Block(
                        agent_id=agent_id,
                        label=default.label,
                        description=default.description,
                        value=default.value,
                        char_limit=default.char_limit,
                    )
                    session.add(block)
                    session.add(_version_of(block, "create", SYSTEM))

    async def list_blocks(self, agent_id: str) -> list[Block]:
        """The agent's blocks: the defaults first in their order, then the rest by label."""
        return in_display_order(await self._all(select(Block).where(Block.agent_id == agent_id)))

    async def get(self, agent_id: str, label: str) -> Block:
        async with self._transaction(read_only=True) as session:
            return await self._require(session, agent_id, label)

    async def create(
        self,
        agent_id: str,
        label: str,
        author: Author,
        *,
        value: str = "",
        description: str = "",
        char_limit: int = DEFAULT_CHAR_LIMIT,
        read_only: bool = False,
    ) -> EditResult:
        value, redacted = redact(value)
        block = new_block(agent_id, label, value, description, char_limit, read_only)
        try:
            async with self._transaction() as session:
                if await _find(session, agent_id, label) is not None:
                    raise BlockExistsError(f"block {label!r} already exists")
                block.version = await _next_version(session, agent_id, label)
                session.add(block)
                session.add(_version_of(block, "create", author))
                return EditResult(block, "", redacted)
        except IntegrityError:
            raise BlockExistsError(f"block {label!r} already exists") from None

    async def edit(
        self,
        agent_id: str,
        label: str,
        transform: Callable[[Block], str],
        author: Author,
        *,
        expected_version: int | None = None,
        action: BlockAction = "edit",
    ) -> EditResult:
        """Set the value to `transform(current block)`, as a new version.

        The block row is locked while the transform runs on its newest value (FOR UPDATE
        on PostgreSQL; SQLite's write lock), so edits racing from two conversations both
        land, each on top of the other. With `expected_version`, a block that moved on is
        refused instead (StaleBlockError): the editor rewrote a value it had not seen.
        """
        async with self._transaction() as session:
            current = await self._require(session, agent_id, label, lock=True)
            if author.kind in ("agent", "reflection") and current.read_only:
                raise ReadOnlyBlockError(
                    f"block {label!r} is read-only; only the user can change it"
                )
            _check_expected(current, expected_version, "since you saw it (you saw")
            before = current.value
            new_value, redacted = redact(transform(current))
            check_limit(label, new_value, current.char_limit)
            _advance(session, current, author, action, value=new_value)
            return EditResult(current, before, redacted)

    async def configure(
        self,
        agent_id: str,
        label: str,
        author: Author,
        *,
        description: str | None = None,
        char_limit: int | None = None,
        read_only: bool | None = None,
        value: str | None = None,
        expected_version: int | None = None,
    ) -> EditResult:
        """A user's change of value and settings, as one new version."""
        if char_limit is not None:
            _check_char_limit(char_limit)
        async with self._transaction() as session:
            current = await self._require(session, agent_id, label, lock=True)
            _check_expected(current, expected_version, "meanwhile (expected")
            before = current.value
            new_value, redacted = (current.value, 0) if value is None else redact(value)
            check_limit(label, new_value, current.char_limit if char_limit is None else char_limit)
            changes = {
                "value": new_value,
                "description": description,
                "char_limit": char_limit,
                "read_only": read_only,
            }
            _advance(
                session,
                current,
                author,
                "edit",
                **{key: change for key, change in changes.items() if change is not None},
            )
            return EditResult(current, before, redacted)

    async def delete(self, agent_id: str, label: str, author: Author) -> BlockVersion:
        async with self._transaction() as session:
            block = await self._require(session, agent_id, label)
            await session.delete(block)
            record = _version_of(block, "delete", author)
            record.version = block.version + 1
            session.add(record)
            return record

    async def history(self, agent_id: str, label: str) -> list[BlockVersion]:
        """Every version of the label, newest first (also after the block was deleted)."""
        versions = await self._all(
            select(BlockVersion)
            .where(BlockVersion.agent_id == agent_id, BlockVersion.label == label)
            .order_by(col(BlockVersion.version).desc())
        )
        if not versions:
            raise UnknownBlockError(f"block {label!r} has no history")
        return versions

    async def version(self, agent_id: str, label: str, version: int) -> BlockVersion:
        async with self._transaction(read_only=True) as session:
            found = await first(
                session,
                select(BlockVersion).where(
                    BlockVersion.agent_id == agent_id,
                    BlockVersion.label == label,
                    BlockVersion.version == version,
                ),
            )
        if found is None:
            raise UnknownBlockError(f"block {label!r} has no version {version}")
        return found

    async def diff(
        self, agent_id: str, label: str, from_version: int | None, to_version: int | None
    ) -> tuple[int, int, str]:
        """(from, to, unified diff); by default the newest version against the one before."""
        if to_version is None:
            to_version = (await self.history(agent_id, label))[0].version
        if from_version is None:
            from_version = max(to_version - 1, 1)
        old = await self.version(agent_id, label, from_version)
        new = await self.version(agent_id, label, to_version)
        text = full_diff(label, old.value, new.value, f"v{from_version}", f"v{to_version}")
        return from_version, to_version, text

    async def revert(self, agent_id: str, label: str, version: int, author: Author) -> EditResult:
        """A new version holding `version`'s value and settings; recreates a deleted block."""
        target = await self.version(agent_id, label, version)
        author = replace(author, reason=author.reason or f"revert to version {version}")
        async with self._transaction() as session:
            block = await _find(session, agent_id, label)
            if block is None:
                block = Block(agent_id=agent_id, label=label)
                block.version = await _next_version(session, agent_id, label) - 1
                session.add(block)
            before = block.value
            block.value, redacted = redact(target.value)
            block.description = target.description
            block.char_limit = target.char_limit
            block.read_only = target.read_only
            block.version += 1
            block.updated_at = utcnow()
            session.add(_version_of(block, "revert", author))
            return EditResult(block, before, redacted)

    # ------------------------------------------------------------------ internals

    async def _require(
        self, session: AsyncSession, agent_id: str, label: str, *, lock: bool = False
    ) -> Block:
        block = await _find(session, agent_id, label, lock=lock)
        if block is None:
            labels = (
                await session.exec(select(Block.label).where(Block.agent_id == agent_id))
            ).all()
            known = ", ".join(sorted(labels)) or "none"
            raise UnknownBlockError(f"no block {label!r}; the blocks are: {known}")
        return block


def in_display_order(blocks: Sequence[Block]) -> list[Block]:
    """The defaults first in their order, then the rest by label."""
    return sorted(blocks, key=lambda b: (DEFAULT_ORDER.get(b.label, len(DEFAULT_ORDER)), b.label))


def new_block(
    agent_id: str, label: str, value: str, description: str, char_limit: int, read_only: bool
) -> Block:
    """A block not yet stored, its label, limit and value checked (MemoryEditError)."""
    _check_label(label)
    _check_char_limit(char_limit)
    check_limit(label, value, char_limit)
    return Block(
        agent_id=agent_id,
        label=label,
        description=description,
        value=value,
        char_limit=char_limit,
        read_only=read_only,
    )


def first_version(block: Block, author: Author) -> BlockVersion:
    """The history row of a block just created (for writers that store both themselves)."""
    return _version_of(block, "create", author)


async def _find(
    session: AsyncSession, agent_id: str, label: str, *, lock: bool = False
) -> Block | None:
    query = select(Block).where(Block.agent_id == agent_id, Block.label == label)
    if lock:
        query = query.with_for_update()
    found: Block | None = await first(session, query)
    return found


async def _next_version(session: AsyncSession, agent_id: str, label: str) -> int:
    """One past the label's newest version, so history survives delete and re-create."""
    newest = (
        await session.exec(
            select(func.max(BlockVersion.version)).where(
                BlockVersion.agent_id == agent_id, BlockVersion.label == label
            )
        )
    ).one()
    return (newest or 0) + 1


def _check_expected(block: Block, expected: int | None, wording: str) -> None:
    if expected is not None and block.version != expected:
        raise StaleBlockError(
            f"block {block.label!r} changed {wording} version {expected}, it is now "
            f"version {block.version})",
            Block(**block.model_dump()),  # a detached copy: the transaction rolls back
        )


def _advance(
    session: AsyncSession, block: Block, author: Author, action: BlockAction, **changes: object
) -> None:
    """Apply `changes` to the locked block as its next version, and record that version."""
    for key, value in changes.items():
        setattr(block, key, value)
    block.version += 1
    block.updated_at = utcnow()
    session.add(block)
    session.add(_version_of(block, action, author))


def _version_of(block: Block, action: BlockAction, author: Author) -> BlockVersion:
    return BlockVersion(
        agent_id=block.agent_id,
        label=block.label,
        version=block.version,
        action=action,
        value=block.value,
        description=block.description,
        char_limit=block.char_limit,
        read_only=block.read_only,
        author_kind=author.kind,
        author=author.name,
        conversation_id=author.conversation_id,
        run_id=author.run_id,
        tool_call_id=author.tool_call_id,
        tool=author.tool,
        reason=author.reason,
    )


def _check_label(label: str) -> None:
    if not LABEL_PATTERN.match(label):
        raise MemoryEditError(
            f"invalid block label {label!r}: use 1-40 lowercase letters, digits or _, "
            "starting with a letter"
        )


def _check_char_limit(char_limit: int) -> None:
    if not 1 <= char_limit <= MAX_CHAR_LIMIT:
        raise MemoryEditError(f"char_limit must be between 1 and {MAX_CHAR_LIMIT}")
