"""Models the provider does not have, through the real SDKs: the fake lists its models and
refuses others as the real APIs do, and the catalog checks a model against that list (fetched
once per server) before any request, except where the list says nothing."""

from __future__ import annotations

from collections.abc import Iterator

import anthropic
import openai
import pytest
from cairn_fakes.models import DEFAULT_ANTHROPIC_MODELS, DEFAULT_OPENAI_MODELS
from cairn_fakes.runner import FakeModelServer
from cairn_server.api.background import ThreadedServer
from cairn_server.config import ModelSettings
from cairn_server.providers.catalog import ModelCatalog
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route
from support.servers import model_env, script


def catalog_for(fake: FakeModelServer) -> ModelCatalog:
    return ModelCatalog(ModelSettings.from_env(model_env(fake)))


async def test_the_fake_lists_its_models_in_each_apis_shape(fake: FakeModelServer) -> None:
    async with openai.AsyncOpenAI(api_key="k", base_url=fake.openai_base_url) as client:
        page = await client.models.list()
    assert [model.id for model in page.data] == list(DEFAULT_OPENAI_MODELS)
    assert {(model.object, model.owned_by) for model in page.data} == {("model", "system")}
    assert all(isinstance(model.created, int) for model in page.data)

    fake.anthropic_models = tuple(f"claude-test-{n}" for n in range(25))
    async with anthropic.AsyncAnthropic(api_key="k", base_url=fake.anthropic_base_url) as client:
        first = await client.models.list(limit=10)
        every = [model.id async for model in client.models.list(limit=10)]
    assert first.has_more and first.first_id == "claude-test-0" and first.last_id == "claude-test-9"
    assert every == list(fake.anthropic_models)  # the SDK followed the pages
    assert first.data[0].type == "model" and first.data[0].display_name == "Claude Test 0"


async def test_a_model_the_fake_does_not_list_gets_the_apis_404(fake: FakeModelServer) -> None:
    fake.set_script(script({"text": "kept for a listed model"}))
    async with openai.AsyncOpenAI(api_key="k", base_url=fake.openai_base_url) as client:
        with pytest.raises(openai.NotFoundError) as refused:
            await client.chat.completions.create(
                model="gpt-nonexistent", messages=[{"role": "user", "content": "hi"}]
            )
    assert refused.value.code == "model_not_found"
    assert "The model `gpt-nonexistent` does not exist" in refused.value.message
    async with anthropic.AsyncAnthropic(api_key="k", base_url=fake.anthropic_base_url) as client:
        with pytest.raises(anthropic.NotFoundError) as missing:
            await client.messages.create(
                model="claude-nonexistent",
                max_tokens=10,
                messages=[{"role": "user", "content": "hi"}],
            )
        answer = await client.messages.create(
            model=DEFAULT_ANTHROPIC_MODELS[0],
            max_tokens=10,
            messages=[{"role": "user", "content": "hi"}],
        )
    assert missing.value.type == "not_found_error"
    assert missing.value.api_message == "model: claude-nonexistent"
    assert [getattr(block, "text", "") for block in answer.content] == ["kept for a listed model"]


async def test_the_catalog_refuses_a_model_its_provider_lacks_asking_once_per_server(
    fake: FakeModelServer,
) -> None:
    catalog = catalog_for(fake)
    try:
        missing = await catalog.choose("openai/gpt-4o-minj")
        assert missing.not_offered and missing.problem is not None
        assert missing.problem.startswith(f"OpenAI at {fake.openai_base_url} has no model")
        assert "it lists openai/gpt-4o-mini, " in missing.problem
        claude = await catalog.choose("anthropic/claude-sonet-4-6")
        assert claude.not_offered and "it lists anthropic/claude-sonnet-4-6" in str(claude.problem)
        for listed in ("openai/gpt-4.1", "openai/gpt-5.4-nano", "anthropic/claude-haiku-4-5"):
            choice = await catalog.choose(listed)
            assert (choice.problem, choice.not_offered) == (None, False), listed
        assert fake.lists_served == 2  # one GET /models per server, whatever was checked
        assert fake.requests == []  # and no model request
    finally:
        await catalog.aclose()


async def test_llama_cpp_python_answers_any_name_so_none_is_refused(
    fake: FakeModelServer,
) -> None:
    fake.quirks = "llama-cpp-python"
    catalog = catalog_for(fake)
    try:
        choice = await catalog.choose("openai/whatever-it-loaded")
    finally:
        await catalog.aclose()
    assert (choice.problem, choice.not_offered) == (None, False)
    assert fake.lists_served == 1


def refusing(status: int, body: dict[str, object]) -> Starlette:
    async def models(_request: Request) -> Response:
        return JSONResponse(body, status_code=status)

    return Starlette(routes=[Route("/v1/models", models, methods=["GET"])])


@pytest.fixture
def no_models_route() -> Iterator[str]:
    with ThreadedServer(refusing(404, {"detail": "Not Found"})) as server:
        yield f"{server.url}/v1"


@pytest.fixture
def refusing_the_key() -> Iterator[str]:
    error = {"message": "Incorrect API key provided", "type": "invalid_request_error"}
    with ThreadedServer(refusing(401, {"error": {**error, "code": "invalid_api_key"}})) as server:
        yield f"{server.url}/v1"


async def test_a_list_that_cannot_be_read_refuses_nothing_and_a_refused_key_is_said(
    no_models_route: str, refusing_the_key: str
) -> None:
    unlisted = ModelCatalog(ModelSettings.from_env({"OPENAI_BASE_URL": no_models_route}))
    refused = ModelCatalog(
        ModelSettings.from_env({"OPENAI_API_KEY": "sk-bad", "OPENAI_BASE_URL": refusing_the_key})
    )
    try:
        unknown = await unlisted.choose("openai/gpt-nonexistent")
        bad_key = await refused.choose("openai/gpt-4.1")
    finally:
        await unlisted.aclose()
        await refused.aclose()
    assert (unknown.problem, unknown.not_offered) == (None, False)
    assert bad_key.not_offered
    assert bad_key.problem == (
        "OpenAI refused the API key (401): Incorrect API key provided. Check OPENAI_API_KEY."
    )
