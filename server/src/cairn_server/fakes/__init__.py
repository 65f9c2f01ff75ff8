"""Fake model servers that speak the OpenAI and Anthropic wire protocols on loopback.

Used by tests, the benchmark and `cairn demo`: answers come from a `Script` of turns.
"""

from cairn_server.fakes.app import RecordedRequest
from cairn_server.fakes.runner import FakeModelServer
from cairn_server.fakes.script import (
    NO_MORE_TURNS_TEXT,
    Script,
    ScriptedError,
    ScriptedToolCall,
    ScriptError,
    Turn,
)

__all__ = [
    "NO_MORE_TURNS_TEXT",
    "FakeModelServer",
    "RecordedRequest",
    "Script",
    "ScriptError",
    "ScriptedError",
    "ScriptedToolCall",
    "Turn",
]
