"""How an OpenAI-compatible server is asked to use tools, and what to tell the user when it
cannot.

Owns the choice between sending `tool_choice` or not and streaming tool requests or not,
from CAIRN_MODEL_TOOL_CHOICE and what a probe of the server found (llama-cpp-python's server
drops `tools` unless `tool_choice` is sent, and refuses `"auto"` while streaming).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

from cairn_server.config import TOOL_CHOICE_ENV, ToolChoiceSetting

# What a probe of GET /models tells apart: llama-cpp-python's server says owned_by "me".
ServerKind = Literal["llama-cpp-python", "other"]
LLAMA_CPP_PYTHON_OWNER = "me"


@dataclass(frozen=True)
class ToolUse:
    """`choice` is sent as tool_choice (None: left out); `stream` says whether a request
    carrying tools is streamed; `problem` (once to the user) says why tools will not work."""

    choice: str | None
    stream: bool
    problem: str | None = None


def server_kind(owners: list[str]) -> ServerKind:
    """The server behind a GET /models answer's `owned_by` values."""
    return "llama-cpp-python" if LLAMA_CPP_PYTHON_OWNER in owners else "other"


def tool_use(setting: ToolChoiceSetting | None, kind: ServerKind) -> ToolUse:
    """What to send with tools. Unset, the server's usual way: `tool_choice` left out, except
    for llama-cpp-python, which is sent "auto" without streaming (the only way it calls tools)."""
    llama_cpp_python = kind == "llama-cpp-python"
    if setting is None:
        return ToolUse("auto", stream=False) if llama_cpp_python else ToolUse(None, stream=True)
    if setting == "none":
        return ToolUse("none", stream=True, problem=NO_TOOLS)
    if setting == "omit":
        problem = DROPPED_TOOLS if llama_cpp_python else None
        return ToolUse(None, stream=True, problem=problem)
    # llama-cpp-python refuses "auto" streamed: tool requests go unstreamed there.
    return ToolUse(setting, stream=not (llama_cpp_python and setting == "auto"))


NO_TOOLS = (
    f"{TOOL_CHOICE_ENV}=none: the model is told not to call tools, so it can read, search and "
    f"edit nothing. Unset {TOOL_CHOICE_ENV} (or set it to auto) for coding work."
)
DROPPED_TOOLS = (
    "This server is llama-cpp-python, which drops the tools from a request that sends no "
    f"tool_choice ({TOOL_CHOICE_ENV}=omit), so the model cannot read, search or edit "
    f"anything. Unset {TOOL_CHOICE_ENV} (or set it to auto): Cairn then sends tool_choice "
    '"auto" without streaming, which llama-cpp-python supports with '
    "--chat_format chatml-function-calling; or use llama.cpp's llama-server --jinja."
)
