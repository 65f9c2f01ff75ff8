"""How the fake model servers count a prompt's tokens and simulate the APIs' prompt caches.

Owns the canonical form of a request (a list of blocks in the provider's order, each with an
identity and a token count) and the two cache rules: OpenAI's automatic prefix caching and
Anthropic's explicit `cache_control` breakpoints.
"""

from __future__ import annotations

import hashlib
import json
import threading
from collections.abc import Iterator
from dataclasses import dataclass
from functools import lru_cache
from typing import Any

from cairn_server.context.tokens import count_tokens

JsonObject = dict[str, Any]

# OpenAI: prompts under 1024 tokens are not cached; hits come in 128-token steps.
OPENAI_MIN_CACHED_TOKENS = 1024
OPENAI_CACHE_STEP = 128
# Anthropic: a breakpoint prefix shorter than this is neither written nor read (the
# minimum of Sonnet and Opus 4.x; Haiku's is larger). A hit is looked for at most this
# many blocks before each breakpoint.
ANTHROPIC_MIN_CACHED_TOKENS = 1024
ANTHROPIC_LOOKBACK_BLOCKS = 20
# What the chat template adds around each message (role markers), as in OpenAI's own
# counting recipe: about three tokens.
MESSAGE_OVERHEAD_TOKENS = 3


@dataclass(frozen=True)
class Block:
    """One unit of a prompt: `key` identifies it (its JSON without cache_control)."""

    key: str
    tokens: int
    breakpoint: bool = False


@dataclass(frozen=True)
class Prompt:
    """A request's prompt as blocks, tools first; `scope` keeps caches apart (API, model)."""

    scope: str
    blocks: tuple[Block, ...]

    @property
    def tokens(self) -> int:
        return sum(block.tokens for block in self.blocks)

    def prefixes(self) -> Iterator[tuple[bytes, int]]:
        """For each block: an id of the prefix ending with it, and that prefix's tokens."""
        digest, total = hashlib.sha256(self.scope.encode()).digest(), 0
        for block in self.blocks:
            digest = hashlib.sha256(digest + block.key.encode()).digest()
            total += block.tokens
            yield digest, total


@dataclass(frozen=True)
class CacheUse:
    """Prompt tokens read from the cache and written to it by one request."""

    read: int = 0
    written: int = 0


@lru_cache(maxsize=4096)
def tokens_of(text: str) -> int:
    return count_tokens(text)


def canonical(value: Any) -> str:
    return json.dumps(value, sort_keys=True, ensure_ascii=False)


def compact(value: Any) -> str:
    """A tool definition as the model reads it: compact JSON (the real APIs render tools
    in their own, similarly terse, formats)."""
    return json.dumps(value, separators=(",", ":"), ensure_ascii=False)


def without_cache_control(block: JsonObject) -> JsonObject:
    return {name: value for name, value in block.items() if name != "cache_control"}


def content_text(content: Any) -> str:
    """The readable text of a message content: a string, or a list of parts."""
    if isinstance(content, str):
        return content
    if not isinstance(content, list):
        return "" if content is None else canonical(content)
    return "\n".join(part_text(part) for part in content)


def part_text(part: Any) -> str:
    if not isinstance(part, dict):
        return canonical(part)
    kind = part.get("type")
    if kind == "text":
        return str(part.get("text", ""))
    if kind == "thinking":
        return str(part.get("thinking", ""))
    if kind == "tool_use":
        return f"{part.get('name')}({canonical(part.get('input', {}))})"
    if kind == "tool_result":
        return content_text(part.get("content", ""))
    return canonical(without_cache_control(part))


# --------------------------------------------------------------------------- OpenAI


def openai_message_text(message: JsonObject) -> str:
    text = f"{message.get('role')}\n{content_text(message.get('content'))}"
    for call in message.get("tool_calls") or []:
        function = call.get("function") or {}
        text += f"\n{function.get('name')}({function.get('arguments', '')})"
    return text


def openai_prompt(body: JsonObject) -> Prompt:
    """Tool definitions, then one block per message (the system prompt is a message)."""
    tools = body.get("tools") or []
    blocks = [
        Block(canonical(tool), tokens_of(compact(tool.get("function", tool)))) for tool in tools
    ]
    for message in body.get("messages") or []:
        tokens = MESSAGE_OVERHEAD_TOKENS + tokens_of(openai_message_text(message))
        blocks.append(Block(canonical(message), tokens))
    return Prompt(f"openai:{body.get('model')}", tuple(blocks))


# --------------------------------------------------------------------------- Anthropic


def anthropic_blocks(role: str, content: Any) -> Iterator[Block]:
    """A message's (or the system prompt's) content blocks; the first one also carries
    the message's role-marker tokens."""
    parts = [{"type": "text", "text": content}] if isinstance(content, str) else content or []
    overhead = 0 if role == "system" else MESSAGE_OVERHEAD_TOKENS
    for position, part in enumerate(parts):
        block = part if isinstance(part, dict) else {"part": part}
        bare = {"role": role, **without_cache_control(block)}
        tokens = tokens_of(part_text(bare)) + (overhead if position == 0 else 0)
        yield Block(canonical(bare), tokens, "cache_control" in block)


def anthropic_prompt(body: JsonObject) -> Prompt:
    """Tools, then system blocks, then every message's content blocks, in that order."""
    blocks: list[Block] = []
    for tool in body.get("tools") or []:
        bare = without_cache_control(tool)
        blocks.append(Block(canonical(bare), tokens_of(compact(bare)), "cache_control" in tool))
    blocks.extend(anthropic_blocks("system", body.get("system")))
    for message in body.get("messages") or []:
        blocks.extend(anthropic_blocks(str(message.get("role")), message.get("content")))
    return Prompt(f"anthropic:{body.get('model')}", tuple(blocks))


# --------------------------------------------------------------------------- the caches


class PromptCache:
    """The prefixes earlier requests left cached, for this server's life; thread-safe."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._openai: set[bytes] = set()
        self._anthropic: set[bytes] = set()

    def clear(self) -> None:
        with self._lock:
            self._openai.clear()
            self._anthropic.clear()

    def openai(self, prompt: Prompt) -> CacheUse:
        """Automatic caching: the longest prefix (in whole blocks) any earlier request
        shared, rounded down to 128 tokens, none under 1024."""
        prefixes = list(prompt.prefixes())
        with self._lock:
            shared = max((tokens for key, tokens in prefixes if key in self._openai), default=0)
            self._openai.update(key for key, _ in prefixes)
        cached = shared // OPENAI_CACHE_STEP * OPENAI_CACHE_STEP
        return CacheUse(read=cached if cached >= OPENAI_MIN_CACHED_TOKENS else 0)

    def anthropic(self, prompt: Prompt) -> CacheUse:
        """Explicit caching: reads the longest prefix an earlier request wrote at one of its
        breakpoints (found within 20 blocks before one of this request's breakpoints);
        writes from there up to this request's last breakpoint."""
        prefixes = list(prompt.prefixes())
        marks = [i for i, block in enumerate(prompt.blocks) if block.breakpoint]
        cacheable = [i for i in marks if prefixes[i][1] >= ANTHROPIC_MIN_CACHED_TOKENS]
        with self._lock:
            read = max(
                (
                    prefixes[j][1]
                    for mark in marks
                    for j in range(max(0, mark - ANTHROPIC_LOOKBACK_BLOCKS), mark + 1)
                    if prefixes[j][0] in self._anthropic
                ),
                default=0,
            )
            self._anthropic.update(prefixes[i][0] for i in cacheable)
        last = prefixes[cacheable[-1]][1] if cacheable else 0
        return CacheUse(read=read, written=max(0, last - read))
