"""Recall: full-text search over every message of an agent, its filters, and vector fusion.

Runs on SQLite (FTS5) and PostgreSQL (tsvector); embeddings come from the fake model server.
"""

from __future__ import annotations

from datetime import UTC, datetime

import pytest
from cairn_fakes.runner import FakeModelServer
from cairn_server.config import EmbeddingSettings
from cairn_server.memory.embeddings import make_embedder
from cairn_server.memory.recall import Recall, RecallHit, search_terms
from cairn_server.storage.db import Database
from cairn_server.storage.models import MessageEmbedding
from cairn_server.storage.store import Store
from sqlmodel import select
from support.store import new_agent, say


@pytest.fixture
async def agent(store: Store) -> str:
    return (await new_agent(store)).id


@pytest.fixture
async def conversation(store: Store, agent: str) -> str:
    return (await store.create_conversation(agent, "first")).id


def ids(hits: list[RecallHit]) -> list[int]:
    return [hit.message_id for hit in hits]


async def test_ranking_finds_stemmed_forms_and_ranks_the_best_match_first(
    database: Database, store: Store, conversation: str, agent: str
) -> None:
    elsewhere = (await store.create_conversation(agent)).id
    unrelated = await say(store, elsewhere, "The weather was lovely this morning.")
    tested = await say(store, conversation, "I tested the migration on PostgreSQL twice.")
    both = await say(store, conversation, "Testing migrations: run the migration tests first.")
    hits = await Recall(database).search(agent, "test migrations")
    assert ids(hits)[:2] == [both, tested]
    assert unrelated not in ids(hits)
    assert hits[0].score > hits[1].score > 0
    assert hits[0].content.startswith("Testing migrations") and hits[0].role == "user"


async def test_a_turn_next_to_the_words_is_found_too(
    database: Database, store: Store, conversation: str, agent: str
) -> None:
    """The answer often follows the question's words without repeating them."""
    await say(store, conversation, "Which port does the dev server listen on?")
    answer = await say(store, conversation, "It listens on 8421.", role="assistant")
    hits = await Recall(database).search(agent, "dev server port")
    assert answer in ids(hits)


async def test_role_filter_really_excludes(
    database: Database, store: Store, conversation: str, agent: str
) -> None:
    user = await say(store, conversation, "deploy the billing service")
    assistant = await say(store, conversation, "I deployed billing to staging", role="assistant")
    tool = await say(store, conversation, "billing deploy log: ok", role="tool")
    recall = Recall(database)
    assert set(ids(await recall.search(agent, "billing deploy"))) == {user, assistant, tool}
    assert ids(await recall.search(agent, "billing deploy", roles=["assistant"])) == [assistant]
    assert set(ids(await recall.search(agent, "billing", roles=["user", "tool"]))) == {user, tool}
    with pytest.raises(ValueError, match="unknown role"):
        await recall.search(agent, "billing", roles=["system"])


async def test_date_filter_really_excludes(
    database: Database, store: Store, conversation: str, agent: str
) -> None:
    january = await say(store, conversation, "cache bug", at=datetime(2026, 1, 5, 9, 0, tzinfo=UTC))
    march = await say(store, conversation, "cache fix", at=datetime(2026, 3, 5, 23, 59, tzinfo=UTC))
    recall = Recall(database)
    start, end = datetime(2026, 2, 1, tzinfo=UTC), datetime(2026, 3, 5, 23, 59, tzinfo=UTC)
    assert ids(await recall.search(agent, "cache", start=start)) == [march]
    assert ids(await recall.search(agent, "cache", end=start)) == [january]
    assert ids(await recall.search(agent, "cache", start=start, end=end)) == [march]  # inclusive
    naive = datetime(2026, 1, 5, 9, 0)  # taken as UTC
    assert ids(await recall.search(agent, "cache", end=naive)) == [january]
    hit = (await recall.search(agent, "cache", start=start))[0]
    assert hit.created_at == datetime(2026, 3, 5, 23, 59, tzinfo=UTC)


async def test_event_messages_only_when_asked_for(
    database: Database, store: Store, conversation: str, agent: str
) -> None:
    await say(store, conversation, "memory block project changed: linting rules", role="event")
    said = await say(store, conversation, "what are the linting rules?")
    recall = Recall(database)
    assert ids(await recall.search(agent, "linting rules")) == [said]
    events = await recall.search(agent, "linting rules", roles=["event"])
    assert [hit.role for hit in events] == ["event"]


SYNTAX = [
    'foo" OR "bar',
    "NEAR(alpha beta)",
    "content: x*",
    "a AND OR NOT ( ) ^ - + :",
    "'; DROP TABLE messages; --",
    "_ __ ___",
    "{agent} : \\ \0",
    "agent: *",
    "ünïcödé façade",
]


async def test_search_syntax_in_a_query_is_just_text(
    database: Database, store: Store, conversation: str, agent: str
) -> None:
    plain = await say(store, conversation, "the facade of alpha beta foo bar")
    recall = Recall(database)
    for query in SYNTAX:
        assert all(hit.message_id == plain for hit in await recall.search(agent, query)), query
    assert ids(await recall.search(agent, 'foo" OR "bar')) == [plain]
    assert await recall.count(agent) == 1


async def test_stopwords_are_dropped_but_a_query_of_only_stopwords_still_searches() -> None:
    assert search_terms("What did the build do when it failed?") == ["build", "failed"]
    assert search_terms("what is it") == ["what", "is", "it"]
    assert search_terms("!!! ???") == []


async def test_another_agents_messages_are_never_returned(
    database: Database, store: Store, conversation: str, agent: str
) -> None:
    other = (await new_agent(store, root_commit="b" * 40)).id
    theirs = (await store.create_conversation(other)).id
    for _ in range(3):
        await say(store, theirs, "the secret rotation schedule for the vault")
    mine = await say(store, conversation, "vault notes")
    recall = Recall(database)
    assert ids(await recall.search(agent, "secret vault rotation schedule")) == [mine]
    assert await recall.count(agent) == 1 and await recall.count(other) == 3


async def test_every_conversation_of_the_agent_is_searched_and_limit_holds(
    database: Database, store: Store, conversation: str, agent: str
) -> None:
    second = (await store.create_conversation(agent, "second")).id
    older = await say(store, conversation, "flaky test in the websocket suite")
    newer = await say(store, second, "flaky test in the websocket suite")
    recall = Recall(database)
    assert set(ids(await recall.search(agent, "flaky websocket"))) == {older, newer}
    assert len(await recall.search(agent, "flaky websocket", limit=1)) == 1
    with pytest.raises(ValueError, match="limit"):
        await recall.search(agent, "flaky", limit=0)
    assert await recall.search(agent, "!!!") == []


# --------------------------------------------------------------------------- embeddings


def fake_env(fake: FakeModelServer, base_url: str | None = None) -> dict[str, str]:
    return {
        "CAIRN_EMBEDDING_MODEL": "fake-embed",
        "CAIRN_EMBEDDING_BASE_URL": base_url or fake.openai_base_url,
        "CAIRN_EMBEDDING_API_KEY": "test-key",
    }


async def test_fused_search_never_returns_another_agents_messages(
    database: Database, store: Store, conversation: str, agent: str, fake: FakeModelServer
) -> None:
    """Neighbours lent a score by the smoothing are resolved to their own conversation, so an
    id next to a match that belongs to another agent never shows."""
    other = (await new_agent(store, "f" * 40)).id
    other_conversation = (await store.create_conversation(other)).id
    for n in range(3):
        await say(store, other_conversation, f"secret {n}: the vault code is 4711")
    mine = [await say(store, conversation, text) for text in ("zebras graze", "tea", "hiking")]
    embedder = make_embedder(EmbeddingSettings.from_env(fake_env(fake)))
    assert embedder is not None
    try:
        for recall in (Recall(database), Recall(database, embedder)):
            hits = await recall.search(agent, "zebras", limit=10)
            assert hits and set(ids(hits)) <= set(mine)
    finally:
        await embedder.aclose()


async def test_with_an_embedder_messages_are_embedded_lazily_and_fused(
    database: Database, store: Store, conversation: str, agent: str, fake: FakeModelServer
) -> None:
    embedder = make_embedder(EmbeddingSettings.from_env(fake_env(fake)))
    assert embedder is not None
    try:
        # separate conversations, so no neighbour smoothing between them
        second, third = [(await store.create_conversation(agent)).id for _ in range(2)]
        exact = await say(store, conversation, "The deployment pipeline uses blue green releases")
        near = await say(store, second, "deploymentpipeline bluegreen")  # no shared word
        await say(store, third, "Lunch is at noon")
        recall = Recall(database, embedder)
        assert ids(await Recall(database).search(agent, "deployment pipeline blue green")) == [
            exact
        ]
        hits = await recall.search(agent, "deployment pipeline blue green")
        assert ids(hits)[:2] == [exact, near]  # near: by the vectors alone (shared trigrams)
        async with database.session(read_only=True) as session, session.begin():
            stored = (await session.exec(select(MessageEmbedding))).all()
        assert {row.model for row in stored} == {"fake-embed"} and len(stored) == 3
        assert all(len(row.vector) == 256 * 4 for row in stored)  # float32
        embedding_calls = [r for r in fake.requests if r.path == "/v1/embeddings"]
        assert embedding_calls[0].headers["authorization"] == "Bearer test-key"
        assert len(embedding_calls[0].body["input"]) == 3  # one batch for the backlog
        await recall.search(agent, "releases")
        again = [r for r in fake.requests if r.path == "/v1/embeddings"]
        assert len(again) == len(embedding_calls) + 1  # only the query; nothing re-embedded
    finally:
        await embedder.aclose()


async def test_an_embedder_that_is_down_degrades_to_text_only(
    database: Database, store: Store, conversation: str, agent: str, fake: FakeModelServer
) -> None:
    said = await say(store, conversation, "rotate the signing keys monthly")
    for base_url in ("http://127.0.0.1:9/v1", f"{fake.url}/missing/v1"):  # unreachable, 404
        embedder = make_embedder(EmbeddingSettings.from_env(fake_env(fake, base_url)))
        assert embedder is not None
        try:
            hits = await Recall(database, embedder).search(agent, "signing keys")
        finally:
            await embedder.aclose()
        assert ids(hits) == [said]


async def test_a_new_embedding_model_re_embeds_the_old_vectors(
    database: Database, store: Store, conversation: str, agent: str, fake: FakeModelServer
) -> None:
    await say(store, conversation, "cache invalidation notes")
    for model in ("model-a", "model-b"):
        env = {**fake_env(fake), "CAIRN_EMBEDDING_MODEL": model}
        embedder = make_embedder(EmbeddingSettings.from_env(env))
        assert embedder is not None
        try:
            assert await Recall(database, embedder).embed_pending(agent) == 1
            assert await Recall(database, embedder).embed_pending(agent) == 0
        finally:
            await embedder.aclose()
    async with database.session(read_only=True) as session, session.begin():
        assert [row.model for row in (await session.exec(select(MessageEmbedding))).all()] == [
            "model-b"
        ]
