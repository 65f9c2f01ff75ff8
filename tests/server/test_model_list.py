"""Whether a model name absent from its provider's GET /models is refused: only when the list
is authoritative (not llama.cpp's servers, not Azure's deployments, not a list that could not be
read), with the closest listed models first and the aliases real APIs accept let through."""

from __future__ import annotations

import asyncio

from cairn_server.providers.model_list import Listing, SharedListing, is_listed, not_offered

OPENAI = "https://api.openai.com/v1"
LISTED = ("gpt-5.4-mini", "gpt-5.4-nano", "gpt-4.1", "gpt-4o-mini", "text-embedding-3-small")


def openai_list(*ids: str, owner: str = "system", base_url: str = OPENAI) -> Listing:
    return Listing("OpenAI", base_url, ids=ids, owners=frozenset({owner}))


def test_a_name_an_authoritative_list_lacks_is_refused_naming_the_closest_first() -> None:
    problem = not_offered("openai/gpt-5.4-mimi", openai_list(*LISTED))
    assert problem is not None and "\n" not in problem
    assert problem.startswith(f"OpenAI at {OPENAI} has no model 'gpt-5.4-mimi'")
    offered = problem.split("it lists ")[1]
    assert offered.startswith("openai/gpt-5.4-mini, ")
    assert "text-embedding" not in offered  # five listed, the four closest shown
    assert offered.endswith(", …")


def test_a_listed_name_and_the_aliases_real_apis_accept_are_not_refused() -> None:
    listing = Listing(
        "Anthropic",
        "https://api.anthropic.com",
        ids=("claude-sonnet-4-5-20250929", "claude-haiku-4-5", "llama3.2:latest"),
    )
    for spec in (
        "anthropic/claude-haiku-4-5",
        "anthropic/claude-sonnet-4-5",  # the undated alias of a dated snapshot
        "anthropic/claude-3-7-sonnet-latest",
        "openai/llama3.2",  # Ollama's implicit :latest tag
    ):
        assert not_offered(spec, listing) is None, spec
    assert not is_listed("claude-sonnet-4", listing.ids)


def test_llama_cpp_servers_serve_any_name_so_nothing_is_refused() -> None:
    for owner in ("llamacpp", "me"):  # llama-server; llama-cpp-python's server
        listing = openai_list("/models/SmolLM2.gguf", owner=owner, base_url="http://h:8080/v1")
        assert not listing.authoritative
        assert not_offered("openai/anything-at-all", listing) is None


def test_an_unreadable_or_empty_list_or_azure_deployments_refuse_nothing() -> None:
    assert not_offered("openai/gpt-nonexistent", None) is None
    assert not_offered("openai/gpt-nonexistent", openai_list()) is None
    azure = openai_list(*LISTED, base_url="https://team.openai.azure.com/openai/v1")
    assert not_offered("openai/my-deployment", azure) is None


def test_a_refused_key_is_said_instead_of_the_models() -> None:
    refused = Listing("OpenAI", OPENAI, refused_key="OpenAI refused the API key (401): bad.")
    assert not_offered("openai/gpt-4.1", refused) == "OpenAI refused the API key (401): bad."


async def test_a_shared_list_is_fetched_once_by_whoever_asks_first() -> None:
    fetched: list[str] = []

    async def fetch() -> Listing | None:
        fetched.append("GET /models")
        await asyncio.sleep(0.01)
        return openai_list(*LISTED)

    shared = SharedListing()
    first, second = await asyncio.gather(shared.get(fetch), shared.get(fetch))
    assert first is second and first is not None and first.ids == LISTED
    assert await shared.get(fetch) is first
    assert fetched == ["GET /models"]


async def test_a_list_whose_fetch_breaks_counts_as_unreadable() -> None:
    async def broken() -> Listing | None:
        raise RuntimeError("a server that answered something no SDK could read")

    assert await SharedListing().get(broken) is None
