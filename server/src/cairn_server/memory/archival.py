"""Archival memory: passages the agent chose to keep, searchable by text and vector.

Owns passage storage (secrets cut before it), tag filters, and the fusion of text and vector
rankings.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime

import sqlalchemy as sa
from cairn_protocol.redaction import redact
from sqlalchemy.sql.elements import ColumnElement, TextClause
from sqlmodel import col, select
from sqlmodel.ext.asyncio.session import AsyncSession

from cairn_server.memory.embeddings import (
    EmbeddingError,
    cosine_ranking,
    embed_query,
    to_bytes,
)
from cairn_server.memory.recall import (
    Searchable,
    fts5_match,
    postgres_bm25,
    postgres_ranks,
    rank_fusion,
    search_terms,
)
from cairn_server.storage.models import Passage
from cairn_server.storage.repository import NotFoundError
from cairn_server.storage.text import to_stored

log = logging.getLogger(__name__)

CANDIDATES = 100
EMBED_PER_SEARCH = 256  # passages without a vector (embedder added later) embedded per search


@dataclass(frozen=True)
class PassageHit:
    id: int
    text: str
    tags: list[str]
    created_at: datetime
    conversation_id: str | None
    run_id: str | None
    score: float


@dataclass(frozen=True)
class Kept:
    """A stored passage, and how many secrets were cut from its text before it was stored."""

    passage: Passage
    secrets_redacted: int


def normalised_tags(tags: Sequence[str]) -> list[str]:
    """Tags as stored and matched: trimmed, lower-case, distinct, in the given order."""
    return list(dict.fromkeys(tag.strip().lower() for tag in tags if tag.strip()))


class Archive(Searchable):
    async def insert(
        self,
        agent_id: str,
        text: str,
        tags: Sequence[str] = (),
        conversation_id: str | None = None,
        run_id: str | None = None,
    ) -> Kept:
        """Keep a passage, secrets cut; it is embedded when an embedder works, and
        text-searchable always."""
        if not text.strip():
            raise ValueError("a passage needs some text")
        text, redacted = redact(text)
        passage = Passage(
            agent_id=agent_id,
            text=text,
            tags=normalised_tags(tags),
            conversation_id=conversation_id,
            run_id=run_id,
        )
        if self._embedder is not None:
            try:
                [vector] = await self._embedder.embed([text])
                passage.embedding, passage.embedding_model = to_bytes(vector), self._embedder.model
            except EmbeddingError as exc:
                log.warning("passage stored without a vector: %s", exc)
        async with self._transaction() as session:
            session.add(passage)
        return Kept(passage, redacted)

    async def search(
        self, agent_id: str, query: str, *, tags: Sequence[str] | None = None, limit: int = 10
    ) -> list[PassageHit]:
        """Passages best matching `query` (and holding every tag in `tags`), best first."""
        if limit < 1:
            raise ValueError(f"limit must be at least 1, not {limit}")
        filters = [col(Passage.agent_id) == agent_id, *self._tag_filters(tags or ())]
        pool = max(CANDIDATES, 4 * limit)
        terms = search_terms(query)
        vectors = await self._vector_ranking(agent_id, query, filters, pool)
        async with self._transaction(read_only=True) as session:
            text = (
                await self._text_matches(session, agent_id, terms, filters, pool) if terms else {}
            )
            scores = rank_fusion(_ordered(text), vectors) if vectors else text
            top = _ordered(scores)[:limit]
            found = select(Passage).where(col(Passage.id).in_(top))
            rows = {row.id: row for row in (await session.exec(found)).all()} if top else {}
        return [_hit(rows[i], scores[i]) for i in top if i in rows]

    async def list_passages(
        self,
        agent_id: str,
        *,
        tags: Sequence[str] | None = None,
        offset: int = 0,
        limit: int = 20,
    ) -> list[Passage]:
        """The agent's passages, newest first, optionally only those with all of `tags`."""
        query = (
            select(Passage)
            .where(col(Passage.agent_id) == agent_id, *self._tag_filters(list(tags or [])))
            .order_by(col(Passage.id).desc())
            .offset(offset)
            .limit(limit)
        )
        return await self._all(query)

    async def get(self, agent_id: str, passage_id: int) -> Passage:
        async with self._transaction(read_only=True) as session:
            return await _owned(session, agent_id, passage_id)

    async def delete(self, agent_id: str, passage_id: int) -> None:
        async with self._transaction() as session:
            await session.delete(await _owned(session, agent_id, passage_id))

    async def count(self, agent_id: str) -> int:
        query = select(sa.func.count()).select_from(Passage).where(Passage.agent_id == agent_id)
        async with self._transaction(read_only=True) as session:
            return int((await session.exec(query)).one())

    async def embed_pending(self, agent_id: str, *, limit: int = EMBED_PER_SEARCH) -> int:
        """Embed passages kept without a vector from the current model; returns how many."""
        if self._embedder is None:
            return 0
        model = col(Passage.embedding_model)
        query = (
            select(Passage)
            .where(
                col(Passage.agent_id) == agent_id,
                sa.or_(model.is_(None), model != self._embedder.model),
            )
            .order_by(col(Passage.id).desc())
            .limit(limit)
        )
        pending = await self._all(query)
        if not pending:
            return 0
        vectors = await self._embedder.embed([passage.text for passage in pending])
        async with self._transaction() as session:
            for passage, vector in zip(pending, vectors, strict=True):
                await session.exec(
                    sa.update(Passage)
                    .where(col(Passage.id) == passage.id)
                    .values(embedding=to_bytes(vector), embedding_model=self._embedder.model)
                )
        return len(pending)

    async def _text_matches(
        self,
        session: AsyncSession,
        agent_id: str,
        terms: Sequence[str],
        filters: list[ColumnElement[bool] | TextClause],
        pool: int,
    ) -> dict[int, float]:
        if self.dialect == "sqlite":
            # bm25() is lower for better matches; the agent column weighs nothing.
            bm25: ColumnElement[float] = sa.literal_column("bm25(passages_fts, 1.0, 0.0)")
            match = fts5_match("text", terms, agent_id)
            query = (
                select(col(Passage.id), (-bm25).label("score"))
                .select_from(sa.table("passages_fts"))
                .join(Passage, col(Passage.id) == sa.literal_column("passages_fts.rowid"))
                .where(sa.text("passages_fts MATCH :match").bindparams(match=match), *filters)
                .order_by(sa.literal_column("score").desc())
                .limit(pool)
            )
        else:
            scope = select(col(Passage.id)).where(col(Passage.agent_id) == agent_id)
            documents = await self._scope_sizes.get(session, ("passages", agent_id), scope)
            found, ranks = postgres_ranks("passages", terms, documents)
            scored = select(col(Passage.id), *ranks).where(found, *filters).offset(0).subquery()
            score = postgres_bm25(scored, len(terms))
            query = (
                select(scored.c.id, score.label("score"))
                .order_by(sa.literal_column("score").desc(), scored.c.id.desc())
                .limit(pool)
            )
        rows = (await session.exec(query)).all()
        return {row[0]: float(row[1]) for row in rows if row[0] is not None}

    async def _vector_ranking(
        self, agent_id: str, query: str, filters: list[ColumnElement[bool] | TextClause], pool: int
    ) -> list[int]:
        """Passage ids by cosine to the query, or [] without a (working) embedder."""
        query_vector = await embed_query(
            self._embedder, lambda: self.embed_pending(agent_id), query, "archival"
        )
        if query_vector is None or self._embedder is None:
            return []
        stored = select(Passage.id, Passage.embedding).where(
            col(Passage.embedding_model) == self._embedder.model, *filters
        )
        async with self._transaction(read_only=True) as session:
            rows = [(i, blob) for i, blob in (await session.exec(stored)).all() if i and blob]
        ranked = cosine_ranking(query_vector, [r[0] for r in rows], [r[1] for r in rows], pool)
        return [passage_id for passage_id, _ in ranked]

    def _tag_filters(self, tags: Sequence[str]) -> list[ColumnElement[bool] | TextClause]:
        """Conditions that a passage holds every one of `tags`."""
        wanted = [to_stored(tag) for tag in normalised_tags(tags)]  # raw SQL: no column type
        if not wanted:
            return []
        if self.dialect == "postgresql":
            contains = sa.text("CAST(passages.tags AS JSONB) @> CAST(:tags AS JSONB)")
            return [contains.bindparams(tags=json.dumps(wanted))]
        return [
            sa.text(
                f"EXISTS (SELECT 1 FROM json_each(passages.tags) WHERE json_each.value = :tag{n})"
            ).bindparams(**{f"tag{n}": tag})
            for n, tag in enumerate(wanted)
        ]


async def _owned(session: AsyncSession, agent_id: str, passage_id: int) -> Passage:
    passage = await session.get(Passage, passage_id)
    if passage is None or passage.agent_id != agent_id:
        raise NotFoundError(f"no passage {passage_id}")
    return passage


def _ordered(scores: dict[int, float]) -> list[int]:
    return sorted(scores, key=lambda i: (-scores[i], -i))


def _hit(passage: Passage, score: float) -> PassageHit:
    return PassageHit(
        id=passage.id or 0,
        text=passage.text,
        tags=list(passage.tags or []),
        created_at=passage.created_at,
        conversation_id=passage.conversation_id,
        run_id=passage.run_id,
        score=round(score, 6),
    )
