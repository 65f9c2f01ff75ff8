"""The fake model server's ASGI app: the routes of each dialect over one shared state.

OpenAI chat completions (as a real server's quirks, when asked), models and embeddings under
/v1, Anthropic messages at /v1/messages.
"""

from __future__ import annotations

from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route

from cairn_fakes.anthropic_messages import ANTHROPIC_DIALECT
from cairn_fakes.delivery import hide_dropped_connections
from cairn_fakes.dialect import Endpoint, new_id, read_json_body, record, turn_handler
from cairn_fakes.embeddings import (
    embeddings_payload,
    embeddings_problem,
    fake_embedding,
    input_texts,
)
from cairn_fakes.models import models_handler
from cairn_fakes.openai_chat import OPENAI_DIALECT, openai_error
from cairn_fakes.quirks import llama_cpp_python_handler
from cairn_fakes.script import ScriptedError
from cairn_fakes.state import FakeModelState


def embeddings_handler(state: FakeModelState) -> Endpoint:
    async def embeddings(request: Request) -> Response:
        _raw, body = await read_json_body(request)
        record(state, request, body)
        if body is None:
            return openai_error(ScriptedError(status=400, message="the body must be a JSON object"))
        problem = embeddings_problem(body)
        if problem is not None:
            return openai_error(ScriptedError(status=400, message=problem))
        texts = input_texts(body)
        tokens = sum(len(text) // 4 + 1 for text in texts)
        payload = embeddings_payload(body, [fake_embedding(text) for text in texts], tokens)
        return JSONResponse(payload, headers={"x-request-id": new_id("req_")})

    return embeddings


def chat_handler(state: FakeModelState) -> Endpoint:
    """Chat completions as the fake's current quirk mode answers them."""
    usual = turn_handler(state, OPENAI_DIALECT)
    quirky = llama_cpp_python_handler(state)

    async def chat(request: Request) -> Response:
        return await (quirky if state.quirks == "llama-cpp-python" else usual)(request)

    return chat


def create_app(state: FakeModelState) -> Starlette:
    hide_dropped_connections()
    return Starlette(
        routes=[
            Route("/v1/chat/completions", chat_handler(state), methods=["POST"]),
            Route("/v1/models", models_handler(state), methods=["GET"]),
            Route("/v1/embeddings", embeddings_handler(state), methods=["POST"]),
            Route("/v1/messages", turn_handler(state, ANTHROPIC_DIALECT), methods=["POST"]),
        ]
    )
