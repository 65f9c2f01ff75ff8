"""Recall: evidence recall@k of conversation search on LoCoMo, beside a plain BM25.

Loads LoCoMo-format conversations into recall memory of a real SQLite database (each sample
an agent, each session a conversation, each turn a message dated by its session), asks every
question of categories 1-4 through `Recall.search` (what conversation_search calls), and
scores the share of each question's evidence turns among the top k. The baseline is a plain
BM25 Okapi (k1=1.2, b=0.75, lower-cased words, no stemming, no stopwords) over the same turn
texts, computed in this run. Then it copies the turns into more agents up to 100,000
stored messages and times the same searches again, and last puts 100,000 messages in one
agent, the worst case for a search.

    uv run python bench/recall.py [DATA_FILE] [--fake-embeddings | --embeddings]
        [--postgres ADMIN_URL] [--skip-100k]

--embeddings uses the embedder configured by CAIRN_EMBEDDING_* (see memory/embeddings.py);
--fake-embeddings starts the fake model server, whose vectors are hashed words and character
trigrams: a test stand-in with no semantics, so its figures say nothing about a real model.
--postgres runs on a fresh temporary database of that PostgreSQL server instead of SQLite.
"""

from __future__ import annotations

import argparse
import asyncio
import collections
import json
import math
import re
import statistics
import sys
import tempfile
import time
import uuid
from collections.abc import Iterator, Sequence
from contextlib import ExitStack
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path

import asyncpg  # type: ignore[import-untyped]
import sqlalchemy as sa
from cairn_fakes.runner import FakeModelServer
from cairn_protocol import WorkspaceIdentity
from cairn_server.config import EmbeddingSettings
from cairn_server.memory.embeddings import Embedder, make_embedder
from cairn_server.memory.recall import Recall
from cairn_server.storage.db import Database, open_database
from cairn_server.storage.models import Message
from cairn_server.storage.store import Store

DEFAULT_DATA = (
    Path(__file__).resolve().parents[2] / "shared" / "data" / "locomo" / "locomo_dev.json"
)
CATEGORIES = {1: "multi-hop", 2: "temporal", 3: "open-domain", 4: "single-hop"}
KS = (5, 10, 20)
TARGET_MESSAGES = 100_000
EVIDENCE_ID = re.compile(r"D:?(\d+):(\d+)")
WORD = re.compile(r"\w+")
FAKE_EMBEDDING_MODEL = "cairn-fake-hash-256"


# --------------------------------------------------------------------------- the data


@dataclass
class Turn:
    dia_id: str
    session: int
    role: str
    text: str
    created_at: datetime


@dataclass
class Question:
    text: str
    category: int
    evidence: set[str]


@dataclass
class Sample:
    sample_id: str
    turns: list[Turn]
    questions: list[Question]
    agent_id: str = ""
    message_dia: dict[int, str] = field(default_factory=dict)  # message id → dia_id


def load_samples(path: Path) -> tuple[list[Sample], list[str]]:
    """The samples and a note for every evidence id repaired or skipped."""
    notes: list[str] = []
    samples = []
    for item in json.loads(path.read_text(encoding="utf-8")):
        turns = list(_turns(item["conversation"]))
        known = {turn.dia_id for turn in turns}
        questions = []
        for qa in item["qa"]:
            if qa.get("category") not in CATEGORIES:
                continue
            evidence = _evidence(item["sample_id"], qa, known, notes)
            if evidence:
                questions.append(Question(qa["question"], qa["category"], evidence))
            else:
                notes.append(f"{item['sample_id']}: skipped {qa['question']!r}: no usable evidence")
        samples.append(Sample(item["sample_id"], turns, questions))
    return samples, notes


def _turns(conversation: dict[str, object]) -> Iterator[Turn]:
    """Every turn as the same text both systems see: `Speaker: text [image: caption]`."""
    speaker_a = conversation["speaker_a"]
    session = 1
    while f"session_{session}" in conversation:
        date = str(conversation[f"session_{session}_date_time"])
        started = datetime.strptime(date, "%I:%M %p on %d %B, %Y").replace(tzinfo=UTC)
        raw = conversation[f"session_{session}"]
        assert isinstance(raw, list)
        for position, turn in enumerate(raw):
            text = f"{turn['speaker']}: {turn['text']}"
            if turn.get("blip_caption"):
                text += f" [image: {turn['blip_caption']}]"
            role = "user" if turn["speaker"] == speaker_a else "assistant"
            yield Turn(
                turn["dia_id"], session, role, text, started + timedelta(seconds=30 * position)
            )
        session += 1


def _evidence(sample_id: str, qa: dict[str, object], known: set[str], notes: list[str]) -> set[str]:
    kept: set[str] = set()
    raw = qa.get("evidence")
    for original in raw if isinstance(raw, list) else []:
        parts = [part.strip() for part in re.split(r"[;,]", str(original)) if part.strip()]
        for part in parts:
            match = EVIDENCE_ID.fullmatch(part)
            repaired = f"D{match[1]}:{match[2]}" if match else None
            if repaired in known:
                kept.add(repaired)
                if repaired != original:
                    notes.append(f"{sample_id}: repaired evidence {original!r} -> {repaired!r}")
            else:
                notes.append(f"{sample_id}: skipped evidence {part!r} (no such turn)")
    return kept


# --------------------------------------------------------------------------- the baseline


class BM25:
    """Okapi BM25 over lower-cased words, no stemming, no stopwords."""

    def __init__(self, documents: Sequence[str], k1: float = 1.2, b: float = 0.75) -> None:
        self.k1, self.b = k1, b
        self.frequencies = [collections.Counter(WORD.findall(d.lower())) for d in documents]
        self.lengths = [sum(f.values()) for f in self.frequencies]
        self.average = sum(self.lengths) / len(self.lengths)
        df = collections.Counter(word for f in self.frequencies for word in f)
        n = len(documents)
        self.idf = {word: math.log(1 + (n - c + 0.5) / (c + 0.5)) for word, c in df.items()}

    def ranking(self, query: str) -> list[int]:
        terms = WORD.findall(query.lower())
        scores = []
        for doc, (frequency, length) in enumerate(zip(self.frequencies, self.lengths, strict=True)):
            norm = self.k1 * (1 - self.b + self.b * length / self.average)
            score = sum(
                self.idf[t] * frequency[t] * (self.k1 + 1) / (frequency[t] + norm)
                for t in terms
                if t in frequency
            )
            scores.append((score, doc))
        return [doc for score, doc in sorted(scores, key=lambda s: -s[0]) if score > 0]


# --------------------------------------------------------------------------- loading


async def new_agent(store: Store, user_id: str, name: str) -> str:
    identity = WorkspaceIdentity(
        root_commit=uuid.uuid5(uuid.NAMESPACE_URL, name).hex,
        display_name=name,
        path=f"/bench/{name}",
    )
    return (await store.get_or_create_agent(user_id, identity)).id


async def add_turns(store: Store, db: Database, agent_id: str, sample: Sample) -> list[int]:
    """The sample's turns as messages of `agent_id`, a conversation per session, inserted in
    bulk; returns the new message ids in turn order."""
    conversations = {}
    for session in sorted({turn.session for turn in sample.turns}):
        conversation = await store.create_conversation(agent_id, f"session {session}")
        conversations[session] = conversation.id
    rows = [
        {
            "conversation_id": conversations[turn.session],
            "role": turn.role,
            "content": turn.text,
            "tool_calls": [],
            "is_error": False,
            "created_at": turn.created_at,
        }
        for turn in sample.turns
    ]
    async with db.engine.begin() as connection:
        await connection.execute(sa.insert(Message), rows)
        message_id: sa.ColumnClause[int] = sa.column("id")
        result = await connection.execute(
            sa.select(message_id)
            .select_from(sa.table("messages"))
            .where(sa.column("conversation_id").in_(conversations.values()))
            .order_by(message_id)
        )
        return [row[0] for row in result]


# --------------------------------------------------------------------------- scoring


@dataclass
class Scores:
    hits: dict[int, float] = field(default_factory=lambda: dict.fromkeys(KS, 0.0))
    by_category: dict[int, list[float]] = field(
        default_factory=lambda: collections.defaultdict(list)
    )
    questions: int = 0

    def add(self, ranked: Sequence[str], question: Question) -> None:
        for k in KS:
            found = len(question.evidence & set(ranked[:k])) / len(question.evidence)
            self.hits[k] += found
            if k == 10:
                self.by_category[question.category].append(found)
        self.questions += 1

    def at(self, k: int) -> float:
        return self.hits[k] / max(1, self.questions)

    def line(self, name: str) -> str:
        ks = "  ".join(f"@{k} {self.at(k):.3f}" for k in KS)
        cats = "  ".join(
            f"{CATEGORIES[c]} {statistics.fmean(v):.3f}"
            for c, v in sorted(self.by_category.items())
        )
        return f"  {name:<6} {ks}   (@10 by category: {cats})"


async def search_all(recall: Recall, samples: Sequence[Sample]) -> tuple[Scores, list[float]]:
    scores, latencies = Scores(), []
    for sample in samples:
        for question in sample.questions:
            started = time.perf_counter()
            hits = await recall.search(sample.agent_id, question.text, limit=max(KS))
            latencies.append((time.perf_counter() - started) * 1000)
            scores.add([sample.message_dia.get(hit.message_id, "") for hit in hits], question)
    return scores, latencies


def bm25_all(samples: Sequence[Sample]) -> Scores:
    scores = Scores()
    for sample in samples:
        index = BM25([turn.text for turn in sample.turns])
        for question in sample.questions:
            ranked = [sample.turns[doc].dia_id for doc in index.ranking(question.text)[: max(KS)]]
            scores.add(ranked, question)
    return scores


def percentile(values: Sequence[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(q * len(ordered)))]


# --------------------------------------------------------------------------- main


async def run(args: argparse.Namespace, url: str, embedder: Embedder | None) -> None:
    samples, notes = load_samples(args.data)
    for note in notes:
        print(f"evidence: {note}")
    questions = sum(len(s.questions) for s in samples)
    turns = sum(len(s.turns) for s in samples)
    print(f"data: {args.data} - {len(samples)} conversations, {turns} turns, {questions} questions")
    db = await open_database(url)
    figures: dict[str, float] = {}
    try:
        store = Store(db)
        user = (await store.ensure_user("bench")).id
        started = time.perf_counter()
        for sample in samples:
            sample.agent_id = await new_agent(store, user, sample.sample_id)
            ids = await add_turns(store, db, sample.agent_id, sample)
            sample.message_dia = {i: t.dia_id for i, t in zip(ids, sample.turns, strict=True)}
        print(f"loaded {turns} messages in {time.perf_counter() - started:.1f} s ({db.dialect})")
        recall = Recall(db, embedder)
        if embedder is not None:
            started = time.perf_counter()
            for sample in samples:
                while await recall.embed_pending(sample.agent_id, limit=512):
                    pass
            print(f"embedded every message in {time.perf_counter() - started:.1f} s")
        ours, latencies = await search_all(recall, samples)
        baseline = bm25_all(samples)
        print(f"evidence recall over {ours.questions} questions (categories 1-4)")
        print(ours.line("cairn"))
        print(baseline.line("bm25"))
        figures.update(p50_ms=percentile(latencies, 0.5), p95_ms=percentile(latencies, 0.95))
        print(f"  search latency over {turns} messages: {_latency(latencies)}")
        if not args.skip_100k:
            figures.update(await many_agents(store, db, user, recall, samples))
            figures.update(await one_agent(store, db, user, recall, samples))
    finally:
        await db.close()
    mode = "text" if embedder is None else "text+vectors"
    pairs = [f"mode={mode}"]
    pairs += [f"recall@{k}_cairn={ours.at(k):.3f} recall@{k}_bm25={baseline.at(k):.3f}" for k in KS]
    pairs += [
        f"{key}={value:.3f}" if "recall" in key else f"{key}={value:.1f}"
        for key, value in figures.items()
    ]
    cairn, bm25, p95 = ours.at(10), baseline.at(10), figures["p95_ms"]
    print(f"in short: recall@10 cairn {cairn:.3f}, bm25 {bm25:.3f}; p95 {p95:.1f} ms")
    print(" ".join(pairs))


async def many_agents(
    store: Store, db: Database, user: str, recall: Recall, samples: Sequence[Sample]
) -> dict[str, float]:
    """Copies of every sample as further agents up to 100,000 messages; the same searches."""
    stored, copy, started = sum(len(s.turns) for s in samples), 0, time.perf_counter()
    while stored < TARGET_MESSAGES:
        copy += 1
        for sample in samples:
            agent = await new_agent(store, user, f"{sample.sample_id}-copy{copy}")
            stored += len(await add_turns(store, db, agent, sample))
    print(
        f"copied to {stored} messages over {len(samples) * (copy + 1)} agents "
        f"({time.perf_counter() - started:.1f} s)"
    )
    await analyze(db)
    scores, latencies = await search_all(recall, samples)
    print(
        f"  search latency over {stored} messages: {_latency(latencies)} "
        f"(recall@10 there {scores.at(10):.3f})"
    )
    return {
        "p95_ms_100k_agents": percentile(latencies, 0.95),
        "recall@10_100k_agents": scores.at(10),
    }


async def one_agent(
    store: Store, db: Database, user: str, recall: Recall, samples: Sequence[Sample]
) -> dict[str, float]:
    """The worst case: one agent holding 100,000 messages (copies of every sample)."""
    agent, stored, started = await new_agent(store, user, "one-agent"), 0, time.perf_counter()
    while stored < TARGET_MESSAGES:
        for sample in samples:
            stored += len(await add_turns(store, db, agent, sample))
    print(f"one agent with {stored} messages ({time.perf_counter() - started:.1f} s)")
    await analyze(db)
    latencies = []
    for sample in samples:
        for question in sample.questions:
            begun = time.perf_counter()
            await recall.search(agent, question.text, limit=max(KS))
            latencies.append((time.perf_counter() - begun) * 1000)
    print(f"  search latency: {_latency(latencies)}")
    return {"p95_ms_100k_one_agent": percentile(latencies, 0.95)}


async def analyze(db: Database) -> None:
    """On PostgreSQL, refresh every table's planner statistics as autovacuum would after a
    bulk load: without them the planner takes 4,700 conversations for 14 and walks them one
    by one, and recall cannot see which words are very common."""
    if db.dialect == "postgresql":
        async with db.engine.begin() as connection:
            await connection.exec_driver_sql("ANALYZE")


def _latency(latencies: Sequence[float]) -> str:
    return f"p50 {percentile(latencies, 0.5):.1f} ms, p95 {percentile(latencies, 0.95):.1f} ms"


async def postgres_admin(admin_url: str, sql: str) -> None:
    connection = await asyncpg.connect(admin_url.replace("+asyncpg", ""), timeout=5)
    try:
        await connection.execute(sql)
    finally:
        await connection.close()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("data", nargs="?", type=Path, default=DEFAULT_DATA)
    vectors = parser.add_mutually_exclusive_group()
    vectors.add_argument("--embeddings", action="store_true", help="use CAIRN_EMBEDDING_*")
    vectors.add_argument(
        "--fake-embeddings", action="store_true", help="the fake server's (not semantic) vectors"
    )
    parser.add_argument("--postgres", metavar="ADMIN_URL", help="run on PostgreSQL instead")
    parser.add_argument("--skip-100k", action="store_true", help="skip the 100k-message timing")
    args = parser.parse_args()
    with ExitStack() as stack, tempfile.TemporaryDirectory(prefix="cairn-recall-") as tmp:
        embedder: Embedder | None = None
        if args.fake_embeddings:
            fake = stack.enter_context(FakeModelServer())
            print(
                "embeddings: the fake server's hashed word/trigram vectors - NOT a semantic "
                "model; fusion figures here only show the path works"
            )
            embedder = make_embedder(
                EmbeddingSettings(model=FAKE_EMBEDDING_MODEL, base_url=fake.openai_base_url)
            )
        elif args.embeddings:
            embedder = make_embedder(EmbeddingSettings.from_env())
            if embedder is None:
                sys.exit("--embeddings needs CAIRN_EMBEDDING_MODEL (and a base URL / key)")
            print(f"embeddings: {embedder.model}")
        url = f"sqlite+aiosqlite:///{Path(tmp) / 'recall.db'}"
        database = None
        if args.postgres:
            database = f"cairn_bench_{uuid.uuid4().hex[:10]}"
            asyncio.run(postgres_admin(args.postgres, f'CREATE DATABASE "{database}"'))
            url = f"{args.postgres.rpartition('/')[0]}/{database}"
        try:
            asyncio.run(_run_and_close(args, url, embedder))
        finally:
            if database is not None:
                drop = f'DROP DATABASE IF EXISTS "{database}" WITH (FORCE)'
                asyncio.run(postgres_admin(args.postgres, drop))


async def _run_and_close(args: argparse.Namespace, url: str, embedder: Embedder | None) -> None:
    try:
        await run(args, url, embedder)
    finally:
        if embedder is not None:
            await embedder.aclose()


if __name__ == "__main__":
    main()
