"""Archival memory: passages kept, found by text and tags, fused with vectors; the embedder.

Runs on SQLite and PostgreSQL; embeddings come from the fake model server through the SDK.
"""

from __future__ import annotations

import math

import pytest
from cairn_fakes.runner import FakeModelServer
from cairn_server.config import EmbeddingSettings
from cairn_server.memory.archival import Archive
from cairn_server.memory.embeddings import EmbeddingError, OpenAIEmbedder, make_embedder
from cairn_server.storage.db import Database
from cairn_server.storage.repository import NotFoundError
from cairn_server.storage.store import Store
from openai import AsyncOpenAI
from support.store import new_agent


@pytest.fixture
async def agent(store: Store) -> str:
    return (await new_agent(store)).id


def embedding_env(fake: FakeModelServer, base_url: str | None = None) -> dict[str, str]:
    return {
        "CAIRN_EMBEDDING_MODEL": "fake-embed",
        "CAIRN_EMBEDDING_BASE_URL": base_url or fake.openai_base_url,
    }


async def test_insert_then_search_by_stemmed_words(database: Database, agent: str) -> None:
    archive = Archive(database)
    build = (
        await archive.insert(agent, "Builds run with `uv run pytest -q` from the repo root.")
    ).passage
    await archive.insert(agent, "The API uses bearer tokens.")
    hits = await archive.search(agent, "building and running")
    assert [hit.id for hit in hits] == [build.id]
    assert hits[0].score > 0 and hits[0].text.startswith("Builds run")
    assert build.embedding is None  # no embedder configured
    assert await archive.search(agent, "kubernetes") == []


async def test_tags_filter_means_every_tag(database: Database, agent: str) -> None:
    archive = Archive(database)
    both = (
        await archive.insert(agent, "release checklist: bump, tag, push", ["Release", " CI "])
    ).passage
    release = (await archive.insert(agent, "release notes live in CHANGES.md", ["release"])).passage
    assert both.tags == ["release", "ci"]  # trimmed, lower-case
    found = await archive.search(agent, "release", tags=["release"])
    assert {hit.id for hit in found} == {both.id, release.id}
    assert [hit.id for hit in await archive.search(agent, "release", tags=["release", "ci"])] == [
        both.id
    ]
    assert await archive.search(agent, "release", tags=["docs"]) == []
    listed = await archive.list_passages(agent, tags=["ci"])
    assert [p.id for p in listed] == [both.id]


async def test_list_get_delete_and_count(database: Database, agent: str) -> None:
    archive = Archive(database)
    first = (await archive.insert(agent, "one")).passage
    second = (await archive.insert(agent, "two", conversation_id=None, run_id="run_1")).passage
    assert [p.id for p in await archive.list_passages(agent)] == [second.id, first.id]
    assert [p.id for p in await archive.list_passages(agent, offset=1, limit=5)] == [first.id]
    assert (await archive.get(agent, second.id or 0)).run_id == "run_1"
    assert await archive.count(agent) == 2
    await archive.delete(agent, first.id or 0)
    assert await archive.count(agent) == 1
    assert await archive.search(agent, "one") == []  # gone from the text index too
    with pytest.raises(NotFoundError, match=f"no passage {first.id}"):
        await archive.delete(agent, first.id or 0)
    with pytest.raises(NotFoundError):
        await archive.get(agent, 999)


async def test_another_agents_passages_stay_theirs(
    database: Database, store: Store, agent: str
) -> None:
    other = (await new_agent(store, "b" * 40)).id
    archive = Archive(database)
    theirs = (await archive.insert(other, "the staging database password rotates weekly")).passage
    assert await archive.search(agent, "staging database password") == []
    assert await archive.list_passages(agent) == []
    with pytest.raises(NotFoundError):
        await archive.get(agent, theirs.id or 0)
    with pytest.raises(NotFoundError):
        await archive.delete(agent, theirs.id or 0)
    assert await archive.count(other) == 1


async def test_empty_text_is_refused_and_nothing_is_stored(database: Database, agent: str) -> None:
    archive = Archive(database)
    with pytest.raises(ValueError, match="needs some text"):
        await archive.insert(agent, "  \n ")
    assert await archive.count(agent) == 0


# --------------------------------------------------------------------------- embeddings


async def test_passages_are_embedded_and_vector_matches_are_fused(
    database: Database, agent: str, fake: FakeModelServer
) -> None:
    embedder = make_embedder(EmbeddingSettings.from_env(embedding_env(fake)))
    assert embedder is not None
    try:
        archive = Archive(database, embedder)
        exact = (await archive.insert(agent, "Database migrations run through Alembic")).passage
        no_shared_word = "databasemigrations alembicupgrade"
        near = (await archive.insert(agent, no_shared_word)).passage
        assert exact.embedding is not None and exact.embedding_model == "fake-embed"
        assert [h.id for h in await Archive(database).search(agent, "database migrations")] == [
            exact.id
        ]
        hits = await archive.search(agent, "database migrations")
        assert [hit.id for hit in hits][:2] == [exact.id, near.id]
    finally:
        await embedder.aclose()


async def test_an_embedder_that_fails_still_keeps_the_passage_and_backfills_later(
    database: Database, agent: str, fake: FakeModelServer
) -> None:
    down = make_embedder(EmbeddingSettings.from_env(embedding_env(fake, "http://127.0.0.1:9/v1")))
    up = make_embedder(EmbeddingSettings.from_env(embedding_env(fake)))
    assert down is not None and up is not None
    try:
        archive = Archive(database, down)
        kept = (await archive.insert(agent, "feature flags live in flags.toml")).passage
        assert kept.id is not None and kept.embedding is None
        hits = await Archive(database, down).search(agent, "feature flags")
        assert [hit.id for hit in hits] == [kept.id]  # text-only, no crash
        await Archive(database, up).search(agent, "feature flags")  # embeds what was missed
        assert (await Archive(database).get(agent, kept.id)).embedding_model == "fake-embed"
    finally:
        await down.aclose()
        await up.aclose()


async def test_embedder_settings_come_from_the_environment() -> None:
    assert make_embedder(EmbeddingSettings.from_env({})) is None
    no_model = EmbeddingSettings.from_env({"OPENAI_API_KEY": "k"})
    assert make_embedder(no_model) is None  # no model, no embeddings
    default = make_embedder(
        EmbeddingSettings.from_env({"CAIRN_EMBEDDING_MODEL": "text-embedding-3-small"})
    )
    assert isinstance(default, OpenAIEmbedder)
    assert default.base_url == "https://api.openai.com/v1"
    fallback = make_embedder(
        EmbeddingSettings.from_env(
            {"CAIRN_EMBEDDING_MODEL": "m", "OPENAI_BASE_URL": "http://local:8080/v1"}
        )
    )
    assert isinstance(fallback, OpenAIEmbedder) and fallback.base_url == "http://local:8080/v1"
    for embedder in (default, fallback):
        await embedder.aclose()


async def test_embedder_errors_say_what_failed(fake: FakeModelServer) -> None:
    cases = {
        "http://127.0.0.1:9/v1": "is unreachable",
        f"{fake.url}/missing/v1": "answered HTTP 404",
    }
    for base_url, expected in cases.items():
        embedder = OpenAIEmbedder("fake-embed", base_url, "k")
        try:
            with pytest.raises(EmbeddingError, match=expected) as failure:
                await embedder.embed(["hello"])
            assert "fake-embed" in str(failure.value) and base_url in str(failure.value)
        finally:
            await embedder.aclose()


async def test_the_fake_embeddings_endpoint_speaks_the_openai_wire_format(
    fake: FakeModelServer,
) -> None:
    """A test stand-in, not a semantic model: deterministic hashed features, unit length."""
    client = AsyncOpenAI(base_url=fake.openai_base_url, api_key="k")
    try:
        texts = ["alpha beta", "alpha beta", "something else entirely"]
        as_floats = await client.embeddings.create(model="m", input=texts, encoding_format="float")
        as_base64 = await client.embeddings.create(model="m", input=texts)  # the SDK's default
        assert [item.index for item in as_floats.data] == [0, 1, 2]
        assert as_floats.model == "m" and as_floats.usage.total_tokens > 0
        vectors = [item.embedding for item in as_floats.data]
        assert len(vectors[0]) == 256 and math.isclose(sum(v * v for v in vectors[0]), 1.0)
        assert vectors[0] == vectors[1] != vectors[2]
        decoded = [item.embedding for item in as_base64.data]
        assert all(
            math.isclose(a, b, abs_tol=1e-6) for a, b in zip(decoded[2], vectors[2], strict=True)
        )
        with pytest.raises(Exception, match="empty string"):
            await client.embeddings.create(model="m", input=[""])
    finally:
        await client.close()
