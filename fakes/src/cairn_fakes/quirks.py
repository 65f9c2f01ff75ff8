"""Real OpenAI-compatible servers' quirks, reproduced by the fake's chat endpoint on demand.

Owns the quirk modes (`llama-cpp-python`: llama-cpp-python's server, version 0.3, which
answers any model name with the model it loaded; its GET /v1/models says owned_by "me",
in cairn_fakes.models).
"""

from __future__ import annotations

import asyncio
from typing import Literal

from starlette.requests import Request
from starlette.responses import Response

from cairn_fakes.delivery import event_stream, json_answer
from cairn_fakes.dialect import (
    Endpoint,
    new_id,
    prompt_tokens,
    read_json_body,
    record,
    token_counts,
)
from cairn_fakes.openai_chat import (
    openai_completion,
    openai_error,
    openai_frames,
    openai_problem,
)
from cairn_fakes.prompt_cache import CacheUse, openai_prompt
from cairn_fakes.script import ScriptedError
from cairn_fakes.state import FakeModelState

Quirks = Literal["llama-cpp-python"]
QUIRK_MODES: tuple[Quirks, ...] = ("llama-cpp-python",)


def llama_cpp_python_overflow(prompt_tokens: int, window: int, max_tokens: object) -> Response:
    """The 400 its server words from "Requested tokens (N) exceed context window of W"
    (only ever sent to a request that is not streamed)."""
    completion = max_tokens if isinstance(max_tokens, int) else None
    message = (
        f"This model's maximum context length is {window} tokens. However, you requested "
        f"{(completion or 0) + prompt_tokens} tokens ({prompt_tokens} in the messages, "
        f"{completion} in the completion). Please reduce the length of the messages or "
        "completion."
    )
    return openai_error(
        ScriptedError(status=400, message=message), code="context_length_exceeded", param="messages"
    )


def empty_stream() -> Response:
    """What its server answers a streamed request it refuses: the error is raised inside the
    event publisher, after the 200 and its headers, so the stream closes without one event."""
    return Response(b"", status_code=200, media_type="text/event-stream")


def llama_cpp_python_handler(state: FakeModelState) -> Endpoint:
    """Chat completions as llama-cpp-python's server answers them:

    - `tools` are ignored (the scripted turn's tool calls are not made) unless `tool_choice`
      is sent and is not "none";
    - `tool_choice: "auto"` while streaming, or a prompt at or over the window (the
      fake's context_window), streamed: HTTP 200 with an empty body;
    - the same overflow unstreamed: a 400 context_length_exceeded;
    - streams carry no usage, whatever stream_options says.
    """

    async def answer(request: Request) -> Response:
        _raw, body = await read_json_body(request)
        record(state, request, body)
        problem = "the body must be a JSON object" if body is None else openai_problem(body)
        if body is None or problem is not None:
            return openai_error(ScriptedError(status=400, message=problem or ""))
        streamed = bool(body.get("stream"))
        prompt = openai_prompt(body)
        window, total = state.context_window, prompt_tokens(prompt, state)
        if window is not None and total >= window:
            if streamed:
                return empty_stream()
            return llama_cpp_python_overflow(total, window, body.get("max_tokens"))
        choice = body.get("tool_choice")
        if streamed and body.get("tools") and choice == "auto":
            return empty_stream()  # "Automatic streaming tool choice is not supported"
        turn = state.next_turn()
        if turn.delay_s:
            await asyncio.sleep(turn.delay_s)
        if turn.error is not None:
            return openai_error(turn.error)
        if not body.get("tools") or choice in (None, "none"):
            turn = turn.model_copy(update={"tool_calls": ()})
        tokens = token_counts(prompt, CacheUse(), turn, total)
        headers = {"x-request-id": new_id("req_")}
        model = str(body["model"])
        if not streamed:
            return json_answer(turn, openai_completion(model, turn, tokens), headers)
        return event_stream(state, turn, openai_frames(model, turn, tokens, False), headers)

    return answer
