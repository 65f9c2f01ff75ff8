"""Recall memory: every message of every conversation of an agent, searchable.

Owns full-text ranking over messages (SQLite FTS5, PostgreSQL tsvector), its filters, its
smoothing over neighbouring turns, and the optional fusion with message embeddings.

Ranking, measured on LoCoMo with bench/recall.py: BM25 over the query's content words (porter
stemming, stopwords dropped), then each matching message lends part of its score to the
next turns (more) and the previous turns (less) of its conversation, and every message gains
a share of the best score within five turns of it: an answer often sits beside the words of
the question, not in them. In a large index, words found in more than one row in twenty are
left out when other words remain: BM25 gives them little weight, but scoring their rows is
most of a search's time. With an embedder, each of the two lists' scores is scaled from its
pool's cut-off to its best (0..1), the cosines weighed by VECTOR_WEIGHT, and their sums are the
matches that get smoothed: a turn near the question's meaning lifts its neighbours too.
"""

from __future__ import annotations

import logging
import re
import time
from collections import defaultdict
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

import sqlalchemy as sa
from sqlalchemy.sql.elements import ColumnElement
from sqlmodel import col, select
from sqlmodel.ext.asyncio.session import AsyncSession
from sqlmodel.sql.expression import Select, SelectOfScalar

from cairn_server.domain import MESSAGE_ROLES, STORED_ROLES, StoredRole
from cairn_server.memory.embeddings import (
    Embedder,
    cosine_ranking,
    embed_query,
    to_bytes,
)
from cairn_server.storage.db import Database
from cairn_server.storage.models import Conversation, Message, MessageEmbedding
from cairn_server.storage.repository import Repository

log = logging.getLogger(__name__)

DEFAULT_ROLES = MESSAGE_ROLES  # events (memory-change notices) only on request

MAX_TERMS = 32
CANDIDATES = 150  # text matches re-ranked with their neighbours
# Neighbour smoothing, tuned on LoCoMo (see the module docstring): weight per distance in
# turns, the extra share the following turns get, and the local-best bonus.
KERNEL = (0.3, 0.1)
FORWARD, BACKWARD = 1.3, 0.7
LOCAL_WINDOW = 5
LOCAL_SHARE = 0.2
RRF_K = 60
# A vector match's weight beside a text match's, once both are scaled to 0..1 (see
# score_fusion). On LoCoMo with all-MiniLM-L6-v2 anything in 0.25-1.0 helps; 0.5 is best.
VECTOR_WEIGHT = 0.5
# On SQLite, with more than PRUNE_FROM rows, words in more than COMMON_SHARE of them are
# left out of a search (see _without_common).
PRUNE_FROM = 10_000
COMMON_SHARE = 0.05
COUNTED_DOCUMENTS = 20_000  # PostgreSQL's idf counts the searched rows up to this many
SCOPE_SIZE_TTL_S = 60.0  # and recounts them after this long
EMBED_PER_SEARCH = 256  # messages embedded lazily by one search; embed_pending() does more
POSTGRES_CONFIG = "english"

# Words that carry no topic; dropped from queries (kept if a query has nothing else).
_STOPWORDS = """a about above after again against all also am an and any are as at be because been
    before being below between both but by can could d did do does doing down during each
    few for from further had has have having he her here hers herself him himself his how i
    if in into is it its itself just ll m me more most my myself no nor not now of off on
    once only or other our ours ourselves out over own re s same she should so some such t
    than that the their theirs them themselves then there these they this those through to
    too under until up ve very was we were what when where which while who whom why will
    with would you your yours yourself yourselves"""
STOPWORDS = frozenset(_STOPWORDS.split())
# Letters and digits: what FTS5's unicode61 and PostgreSQL's parser both keep as words.
WORD = re.compile(r"[^\W_]+")


@dataclass(frozen=True)
class RecallHit:
    message_id: int
    conversation_id: str
    role: StoredRole
    content: str
    created_at: datetime
    score: float


def search_terms(query: str) -> list[str]:
    """The query's distinct content words, lower-cased; FTS syntax in it is just punctuation."""
    words = WORD.findall(query.lower())
    content = [word for word in words if word not in STOPWORDS]
    return list(dict.fromkeys(content or words))[:MAX_TERMS]


def fts5_match(column: str, terms: Sequence[str], agent_id: str) -> str:
    """An FTS5 query: the agent's rows holding any of the terms, each term quoted.

    The index's `agent` column holds the agent id without underscores (see migration 0002).
    """
    agent = _quote(agent_id.replace("_", ""))
    return f"agent: {agent} AND {column}: ({' OR '.join(map(_quote, terms))})"


def _quote(text: str) -> str:
    return '"' + text.replace('"', '""') + '"'


def rank_fusion(*rankings: Sequence[int]) -> dict[int, float]:
    """Reciprocal rank fusion: each ranking gives 1/(60 + rank) to the ids it holds."""
    fused: dict[int, float] = defaultdict(float)
    for ranking in rankings:
        for rank, item in enumerate(ranking, start=1):
            fused[item] += 1.0 / (RRF_K + rank)
    return fused


def score_fusion(
    text: dict[int, tuple[str, float]], vectors: dict[int, tuple[str, float]], pool: int
) -> dict[int, tuple[str, float]]:
    """Text and vector matches (id → (conversation id, score)) as one set of matches: each
    list scaled to 0..1 (see _scaled), vectors weighed by VECTOR_WEIGHT, summed per id."""
    fused: dict[int, tuple[str, float]] = {}
    for matches, weight in ((text, 1.0), (vectors, VECTOR_WEIGHT)):
        scaled = _scaled({i: score for i, (_, score) in matches.items()}, pool)
        for i, (conversation_id, _) in matches.items():
            before = fused.get(i, (conversation_id, 0.0))[1]
            fused[i] = (conversation_id, before + weight * scaled[i])
    return {i: match for i, match in fused.items() if match[1] > 0}


def _scaled(scores: dict[int, float], pool: int) -> dict[int, float]:
    """From the pool's cut-off (its lowest score; 0 when fewer matched) to its best, as 0..1:
    BM25 and cosines differ in scale, and cosines also from model to model."""
    if not scores:
        return {}
    high = max(scores.values())
    low = min(scores.values()) if len(scores) >= pool else 0.0
    return {i: (s - low) / (high - low) if high > low else 1.0 for i, s in scores.items()}


def postgres_ranks(
    table: str, terms: Sequence[str], documents: int
) -> tuple[ColumnElement[bool], list[ColumnElement[Any]]]:
    """For a SELECT over `table`: the match condition, and as columns one ts_rank per term
    (rank0, rank1...; 0 where the term is absent) and `documents`, the number of rows in
    the searched scope. See postgres_bm25."""
    search_vector: ColumnElement[Any] = sa.literal_column(f"{table}.search_vector")
    queries = [sa.func.plainto_tsquery(POSTGRES_CONFIG, sa.literal(term)) for term in terms]
    any_term: ColumnElement[Any] = queries[0]
    for query in queries[1:]:
        any_term = any_term.op("||")(query)
    columns: list[ColumnElement[Any]] = [
        sa.cast(sa.func.ts_rank(search_vector, query, sa.literal(1)), sa.Float).label(f"rank{n}")
        for n, query in enumerate(queries)
    ]
    columns.append(sa.literal(documents, sa.Integer).label("documents"))
    match: ColumnElement[bool] = search_vector.op("@@")(any_term)
    return match, columns


class ScopeSizes:
    """How many rows each search scope holds, for PostgreSQL's idf: counted up to
    COUNTED_DOCUMENTS, at most once per SCOPE_SIZE_TTL_S a scope.

    Counting 20,000 rows costs about 25 ms, a third of a search; the idf barely moves while
    a scope grows, and a scope that outgrew its count shows it (see postgres_bm25)."""

    def __init__(self) -> None:
        self._sizes: dict[tuple[str, str], tuple[float, int]] = {}

    async def get(
        self, session: AsyncSession, key: tuple[str, str], scope: SelectOfScalar[int | None]
    ) -> int:
        now = time.monotonic()
        cached = self._sizes.get(key)
        if cached is not None and now - cached[0] < SCOPE_SIZE_TTL_S:
            return cached[1]
        capped = scope.limit(COUNTED_DOCUMENTS).subquery()
        size = int((await session.exec(select(sa.func.count()).select_from(capped))).one())
        self._sizes[key] = (now, size)
        return size


def postgres_bm25(scored: sa.Subquery, terms: int) -> ColumnElement[float]:
    """The score of each row of `scored` (a SELECT with postgres_ranks' columns).

    ts_rank carries no inverse document frequency, so a common word would count as much as
    a rare one: each term's ts_rank is weighed by its BM25 idf, with the term's frequency
    counted over the scored rows (a window).
    """
    documents = sa.func.greatest(scored.c.documents, sa.func.count().over())
    score: ColumnElement[float] = sa.literal(0.0, sa.Float)
    for n in range(terms):
        rank = scored.c[f"rank{n}"]
        frequency = sa.func.count().filter(rank > 0).over()
        idf = sa.func.ln(1.0 + (documents - frequency + 0.5) / (frequency + 0.5))
        score = score + rank * sa.cast(idf, sa.Float)
    return score


class Searchable(Repository):
    """A store searched by text and, with an embedder, by vector (recall and archival)."""

    def __init__(self, db: Database, embedder: Embedder | None = None) -> None:
        super().__init__(db)
        self._embedder = embedder
        self._scope_sizes = ScopeSizes()


class Recall(Searchable):
    async def search(
        self,
        agent_id: str,
        query: str,
        *,
        roles: Sequence[str] | None = None,
        start: datetime | None = None,
        end: datetime | None = None,
        limit: int = 10,
    ) -> list[RecallHit]:
        """The agent's messages best matching `query`, best first.

        `roles` defaults to user, assistant and tool (events only when asked for); `start`
        and `end` are inclusive bounds on created_at (naive datetimes are UTC).
        """
        roles = _checked_roles(roles)
        filters = _filters(roles, start, end)
        narrow = not set(DEFAULT_ROLES) <= set(roles) or start is not None or end is not None
        if limit < 1:
            raise ValueError(f"limit must be at least 1, not {limit}")
        terms = search_terms(query)
        pool = max(CANDIDATES, 4 * limit)
        vectors = await self._vector_matches(agent_id, query, filters, pool)
        async with self._transaction(read_only=True) as session:
            matches: dict[int, tuple[str, float]] = {}
            if terms:
                matches = await self._text_matches(session, agent_id, terms, filters, pool, narrow)
            if vectors:
                matches = score_fusion(matches, vectors, pool)
            in_context = _in_context(matches)
            ranking = _best_per_message(in_context)
            return await _top_hits(session, ranking, in_context, filters, limit)

    async def count(self, agent_id: str) -> int:
        """Every message stored for the agent, in all its conversations."""
        query = (
            select(sa.func.count())
            .select_from(Message)
            .join(Conversation, col(Conversation.id) == col(Message.conversation_id))
            .where(Conversation.agent_id == agent_id)
        )
        async with self._transaction(read_only=True) as session:
            return int((await session.exec(query)).one())

    async def embed_pending(self, agent_id: str, *, limit: int = EMBED_PER_SEARCH) -> int:
        """Embed up to `limit` of the agent's messages that have no vector from the current
        model, newest first; returns how many. Raises EmbeddingError if the endpoint fails."""
        if self._embedder is None:
            return 0
        model = self._embedder.model
        stale = sa.or_(
            col(MessageEmbedding.message_id).is_(None), col(MessageEmbedding.model) != model
        )
        query = (
            select(Message.id, Message.content)
            .join(Conversation, col(Conversation.id) == col(Message.conversation_id))
            .outerjoin(MessageEmbedding, col(MessageEmbedding.message_id) == col(Message.id))
            .where(Conversation.agent_id == agent_id, col(Message.content) != "", stale)
            .order_by(col(Message.id).desc())
            .limit(limit)
        )
        async with self._transaction(read_only=True) as session:
            pending = list((await session.exec(query)).all())
        if not pending:
            return 0
        vectors = await self._embedder.embed([content for _, content in pending])
        ids = [int(message_id or 0) for message_id, _ in pending]
        async with self._transaction() as session:
            await session.exec(
                sa.delete(MessageEmbedding).where(col(MessageEmbedding.message_id).in_(ids))
            )
            session.add_all(
                MessageEmbedding(
                    message_id=message_id, agent_id=agent_id, model=model, vector=to_bytes(v)
                )
                for message_id, v in zip(ids, vectors, strict=True)
            )
        return len(pending)

    async def _text_matches(
        self,
        session: AsyncSession,
        agent_id: str,
        terms: Sequence[str],
        filters: list[ColumnElement[bool]],
        pool: int,
        narrow: bool,
    ) -> dict[int, tuple[str, float]]:
        """The best `pool` text matches: message id → (conversation id, score > 0).

        `narrow`: the filters leave out more than event messages."""
        if self.dialect == "sqlite":
            terms = await _without_common(session, "messages", "content", terms)
            query = _sqlite_matches(agent_id, terms, filters, pool, narrow)
        else:
            terms = await _postgres_without_common(session, "messages", terms)
            scope = select(col(Message.id)).where(
                col(Message.conversation_id).in_(_conversations(agent_id))
            )
            documents = await self._scope_sizes.get(session, ("messages", agent_id), scope)
            query = _postgres_matches(agent_id, terms, filters, pool, documents)
        rows = (await session.exec(query)).all()
        return {row[0]: (row[1], float(row[2])) for row in rows if row[0] is not None}

    async def _vector_matches(
        self, agent_id: str, query: str, filters: list[ColumnElement[bool]], pool: int
    ) -> dict[int, tuple[str, float]]:
        """The `pool` messages nearest the query: id → (conversation id, cosine > 0); {}
        without a (working) embedder."""
        query_vector = await embed_query(
            self._embedder, lambda: self.embed_pending(agent_id), query, "recall"
        )
        if query_vector is None or self._embedder is None:
            return {}
        stored = (
            select(MessageEmbedding.message_id, MessageEmbedding.vector, Message.conversation_id)
            .join(Message, col(Message.id) == col(MessageEmbedding.message_id))
            .where(
                MessageEmbedding.agent_id == agent_id,
                MessageEmbedding.model == self._embedder.model,
                *filters,
            )
        )
        async with self._transaction(read_only=True) as session:
            rows = list((await session.exec(stored)).all())
        conversations = {row[0]: row[2] for row in rows}
        ranked = cosine_ranking(query_vector, [r[0] for r in rows], [r[1] for r in rows], pool)
        return {i: (conversations[i], cosine) for i, cosine in ranked}


def _sqlite_matches(
    agent_id: str,
    terms: Sequence[str],
    filters: list[ColumnElement[bool]],
    pool: int,
    narrow: bool,
) -> Select[int | None, str, float]:
    """Scored with bm25() (lower is better; the agent column weighs nothing). Unless the
    filters are narrow, the best rows are picked in the index before reading any message:
    joining every match first costs a third of the time, to drop only a few events."""
    bm25: ColumnElement[float] = sa.literal_column("bm25(messages_fts, 1.0, 0.0)")
    score: ColumnElement[float] = sa.literal_column("score")
    matching = sa.text("messages_fts MATCH :match").bindparams(
        match=fts5_match("content", terms, agent_id)
    )
    rowid: ColumnElement[int] = sa.literal_column("messages_fts.rowid")
    if narrow:
        return (
            select(col(Message.id), col(Message.conversation_id), (-bm25).label("score"))
            .select_from(sa.table("messages_fts"))
            .join(Message, col(Message.id) == rowid)
            .where(matching, *filters)
            .order_by(score.desc())
            .limit(pool)
        )
    best = (
        select(rowid.label("id"), (-bm25).label("score"))
        .select_from(sa.table("messages_fts"))
        .where(matching)
        .order_by(score.desc())
        .limit(pool)
        .subquery()
    )
    return (
        select(col(Message.id), col(Message.conversation_id), sa.cast(best.c.score, sa.Float))
        .join(best, best.c.id == col(Message.id))
        .where(*filters)
    )


async def _without_common(
    session: AsyncSession, table: str, column: str, terms: Sequence[str]
) -> Sequence[str]:
    """The terms less those in more than COMMON_SHARE of all rows, if any term is left.

    BM25 gives such a word little weight, yet scoring every row that holds it is most of a
    search's time in a large index (a speaker's name in every turn: 45 ms of 50 at 100k
    messages). A small index keeps every term, so partial matches still show."""
    if len(terms) < 2:
        return terms
    fts = f"{table}_fts"
    counts = [f"(SELECT count(*) FROM {fts} WHERE {fts} MATCH :term{n})" for n in range(len(terms))]
    query = sa.text(f"SELECT (SELECT max(rowid) FROM {table}), {', '.join(counts)}").bindparams(
        **{f"term{n}": f"{column}: {_quote(term)}" for n, term in enumerate(terms)}
    )
    connection = await session.connection()
    rows, *frequencies = (await connection.execute(query)).one()
    if (rows or 0) < PRUNE_FROM:
        return terms
    kept = [t for t, f in zip(terms, frequencies, strict=True) if f <= COMMON_SHARE * rows]
    return kept or terms


# Each query term's share of rows from PostgreSQL's statistics of the column (its most common
# lexemes, kept by ANALYZE): free to read, and absent for a small or new table.
_LEXEME_SHARES = sa.text(
    """
    SELECT t.term, max(f.share) FROM unnest(CAST(:terms AS text[])) AS t(term)
    CROSS JOIN LATERAL unnest(tsvector_to_array(to_tsvector(CAST(:config AS regconfig), t.term)))
        AS l(lexeme)
    LEFT JOIN (
        SELECT unnest(CAST(CAST(most_common_elems AS text) AS text[])) AS lexeme,
               unnest(most_common_elem_freqs) AS share
        FROM pg_stats WHERE tablename = :table AND attname = 'search_vector'
    ) AS f ON f.lexeme = l.lexeme
    GROUP BY t.term
    """
)


async def _postgres_without_common(
    session: AsyncSession, table: str, terms: Sequence[str]
) -> Sequence[str]:
    """As _without_common, for PostgreSQL."""
    if len(terms) < 2:
        return terms
    connection = await session.connection()
    query = _LEXEME_SHARES.bindparams(terms=list(terms), config=POSTGRES_CONFIG, table=table)
    shares = {term: share for term, share in (await connection.execute(query)).all()}
    kept = [term for term in terms if (shares.get(term) or 0.0) <= COMMON_SHARE]
    return kept or terms


def _conversations(agent_id: str) -> SelectOfScalar[str]:
    return select(col(Conversation.id)).where(Conversation.agent_id == agent_id)


def _postgres_matches(
    agent_id: str,
    terms: Sequence[str],
    filters: list[ColumnElement[bool]],
    pool: int,
    documents: int,
) -> Select[int | None, str, float]:
    conversations = _conversations(agent_id)
    match, ranks = postgres_ranks("messages", terms, documents)
    scored = (
        select(col(Message.id), col(Message.conversation_id), *ranks)
        .where(col(Message.conversation_id).in_(conversations), match, *filters)
        .offset(0)  # keeps PostgreSQL from inlining it and ranking each row twice
        .subquery()
    )
    score = postgres_bm25(scored, len(terms))
    return (
        select(scored.c.id, scored.c.conversation_id, score.label("score"))
        .order_by(sa.literal_column("score").desc(), scored.c.id.desc())
        .limit(pool)
    )


async def _top_hits(
    session: AsyncSession,
    ranking: dict[int, float],
    in_context: dict[tuple[int, str], float] | None,
    filters: list[ColumnElement[bool]],
    limit: int,
) -> list[RecallHit]:
    """The best `limit` messages of `ranking` that exist and pass the filters.

    A neighbour's ranking score assumed it shares a conversation with the match beside it;
    with `in_context`, its row's real conversation decides its score, which can only fall.
    So rows are read best first, a few more than needed at a time, until no unread message
    could still beat the last hit kept.
    """
    order = _ordered(ranking)
    batch = limit + 10
    hits: list[RecallHit] = []
    for start in range(0, len(order), batch):
        ids = order[start : start + batch]
        query = select(Message).where(
            col(Message.id).in_(ids), col(Message.content) != "", *filters
        )
        for row in (await session.exec(query)).all():
            assert row.id is not None
            score = (
                ranking[row.id]
                if in_context is None
                else in_context.get((row.id, row.conversation_id), 0.0)
            )
            if score > 0:
                hits.append(_hit(row, score))
        hits.sort(key=lambda hit: (-hit.score, -hit.message_id))
        unread_best = ranking[order[start + batch]] if start + batch < len(order) else 0.0
        if len(hits) >= limit and hits[limit - 1].score >= unread_best:
            break
    return hits[:limit]


def _hit(row: Message, score: float) -> RecallHit:
    return RecallHit(
        message_id=row.id or 0,
        conversation_id=row.conversation_id,
        role=row.role,
        content=row.content,
        created_at=row.created_at,
        score=round(score, 6),
    )


def _in_context(matches: dict[int, tuple[str, float]]) -> dict[tuple[int, str], float]:
    """Each match lends its score to the turns around it (by id, within its conversation),
    then every turn gains a share of the best score within LOCAL_WINDOW turns of it.

    Keyed by (message id, conversation id): a neighbour's conversation is not known yet.
    """
    spread: dict[str, dict[int, float]] = defaultdict(lambda: defaultdict(float))
    for message_id, (conversation_id, score) in matches.items():
        turns = spread[conversation_id]
        turns[message_id] += score
        for distance, weight in enumerate(KERNEL, start=1):
            turns[message_id + distance] += weight * FORWARD * score
            turns[message_id - distance] += weight * BACKWARD * score
    result: dict[tuple[int, str], float] = {}
    for conversation_id, turns in spread.items():
        for message_id, score in turns.items():
            window = range(message_id - LOCAL_WINDOW, message_id + LOCAL_WINDOW + 1)
            best = max(turns.get(other, 0.0) for other in window)
            result[(message_id, conversation_id)] = score + LOCAL_SHARE * best
    return result


def _best_per_message(in_context: dict[tuple[int, str], float]) -> dict[int, float]:
    best: dict[int, float] = {}
    for (message_id, _), score in in_context.items():
        best[message_id] = max(score, best.get(message_id, 0.0))
    return best


def _ordered(scores: dict[int, float]) -> list[int]:
    """Best first; on a tie the newer message first."""
    return sorted(scores, key=lambda i: (-scores[i], -i))


def _checked_roles(roles: Sequence[str] | None) -> tuple[str, ...]:
    if roles is None:
        return DEFAULT_ROLES
    unknown = sorted(set(roles) - set(STORED_ROLES))
    if unknown:
        raise ValueError(f"unknown role(s) {', '.join(unknown)}; use {', '.join(STORED_ROLES)}")
    return tuple(dict.fromkeys(roles)) or DEFAULT_ROLES


def _filters(
    roles: Sequence[str], start: datetime | None, end: datetime | None
) -> list[ColumnElement[bool]]:
    filters: list[ColumnElement[bool]] = [col(Message.role).in_(roles)]
    if start is not None:
        filters.append(col(Message.created_at) >= _utc(start))
    if end is not None:
        filters.append(col(Message.created_at) <= _utc(end))
    return filters


def _utc(moment: datetime) -> datetime:
    return moment.replace(tzinfo=UTC) if moment.tzinfo is None else moment.astimezone(UTC)
