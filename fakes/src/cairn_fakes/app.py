"""The fake model server's ASGI app: the routes of each dialect over one shared state.

OpenAI chat completions and embeddings under /v1, Anthropic messages at /v1/messages.
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
from cairn_fakes.openai_chat import OPENAI_DIALECT, openai_error
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


def create_app(state: FakeModelState) -> Starlette:
    hide_dropped_connections()
    return Starlette(
        routes=[
            Route("/v1/chat/completions", turn_handler(state, OPENAI_DIALECT), methods=["POST"]),
            Route("/v1/embeddings", embeddings_handler(state), methods=["POST"]),
            Route("/v1/messages", turn_handler(state, ANTHROPIC_DIALECT), methods=["POST"]),
        ]
    )
