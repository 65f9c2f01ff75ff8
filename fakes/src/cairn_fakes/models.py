"""The models the fake serves: GET /v1/models in each API's wire shape, and the lists a model
request is checked against (a name absent gets the API's real 404).

Owns the default lists (every name the tests, benchmarks and `cairn demo` use), the OpenAI
list (`{"object": "list", "data": [...]}`) and Anthropic's paginated one (told apart by the
`anthropic-version` header the Anthropic SDK sends).
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from starlette.requests import Request
from starlette.responses import JSONResponse, Response

if TYPE_CHECKING:  # the state holds these lists: imported only for the types
    from cairn_fakes.dialect import Endpoint
    from cairn_fakes.state import FakeModelState

JsonObject = dict[str, Any]

DEFAULT_OPENAI_MODELS = (
    "gpt-5.4",
    "gpt-5.4-mini",
    "gpt-5.4-nano",
    "gpt-4.1",
    "gpt-4.1-mini",
    "gpt-4o",
    "gpt-4o-mini",
    "cairn-demo",
    "smollm2-135m-instruct",  # as a local server (vLLM, Ollama) would serve SmolLM2
)
DEFAULT_ANTHROPIC_MODELS = (
    "claude-opus-4-6",
    "claude-sonnet-4-6",
    "claude-sonnet-4-5-20250929",
    "claude-haiku-4-5",
)
CREATED = 1_700_000_000  # the same `created` for every model: the fake has no history
CREATED_AT = "2025-02-19T00:00:00Z"
# The Messages API's page size: 20 unless `limit` asks for 1 to 1000.
ANTHROPIC_PAGE = 20
ANTHROPIC_MAX_PAGE = 1000


def openai_models(state: FakeModelState) -> JsonObject:
    """OpenAI's list; llama-cpp-python's server (quirk mode) lists the one model it loaded
    (the first), owned_by "me"."""
    llama_cpp_python = state.quirks == "llama-cpp-python"
    owner = "me" if llama_cpp_python else "system"
    names = state.openai_models[:1] if llama_cpp_python else state.openai_models
    data = [
        {"id": name, "object": "model", "created": CREATED, "owned_by": owner} for name in names
    ]
    return {"object": "list", "data": data}


def anthropic_page(names: tuple[str, ...], query: dict[str, str]) -> JsonObject:
    """One page of Anthropic's list: `limit`, after `after_id` or before `before_id`."""
    try:
        limit = min(ANTHROPIC_MAX_PAGE, max(1, int(query.get("limit", ANTHROPIC_PAGE))))
    except ValueError:
        limit = ANTHROPIC_PAGE
    start, end = 0, len(names)
    if query.get("after_id") in names:
        start = names.index(query["after_id"]) + 1
    if query.get("before_id") in names:
        end = names.index(query["before_id"])
        start = max(start, end - limit)
    page = names[start:end][:limit]
    data = [
        {"type": "model", "id": name, "display_name": display_name(name), "created_at": CREATED_AT}
        for name in page
    ]
    return {
        "data": data,
        "has_more": start + len(page) < end,
        "first_id": page[0] if page else None,
        "last_id": page[-1] if page else None,
    }


def display_name(model_id: str) -> str:
    """claude-sonnet-4-6 → "Claude Sonnet 4.6", as Anthropic names its models."""
    words = [word for word in model_id.split("-") if not (word.isdigit() and len(word) == 8)]
    named = [word.capitalize() for word in words if not word.isdigit()]
    version = ".".join(word for word in words if word.isdigit())
    return " ".join([*named, version]).strip()


def models_handler(state: FakeModelState) -> Endpoint:
    """GET /v1/models in the shape of the API that asks (not recorded: the request log holds
    the model calls)."""

    async def models(request: Request) -> Response:
        state.lists_served += 1
        if "anthropic-version" in request.headers:
            query = dict(request.query_params)
            return JSONResponse(anthropic_page(state.anthropic_models, query))
        return JSONResponse(openai_models(state))

    return models
