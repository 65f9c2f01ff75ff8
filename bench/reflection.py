"""Reflection (sleep-time memory) on LoCoMo: how many planted facts end up in core memory, and
what reflecting cost in tokens.

Each LoCoMo conversation of the development split (/work/shared/data/locomo/locomo_dev.json)
is stored as one Cairn conversation (speaker A's turns as the user's, speaker B's as the
assistant's, each session's first turn carrying its date), in a real store (SQLite), then
reflected on by the server's own Reflector until its watermark reaches the last message (a long
conversation is read in chunks of CAIRN_REFLECTION_CHUNK_TOKENS). The planted facts are the
answers of the single-hop questions (category 4) whose evidence turns were all fed; a fact is
in memory when its answer appears in the blocks afterwards (exactly, after normalising case,
punctuation and spaces) or, looser, when 80% of its content words do. Measured too: the
reflection's tokens (in + out) and their ratio to the conversation's own tokens, the edits made
and refused, and what the blocks hold against their limits.

The model: the fake OpenAI server by default, answering each chunk with a scripted extractive
stand-in (the first sentence of each turn, inserted into `human` for speaker A and `project`
for speaker B, within each block's share of room). Its recall measures only the mechanics
(chunking, edits applied within limits, the watermark), never a model's quality. With
CAIRN_REAL_MODEL (a URL of any OpenAI-compatible server, or a GGUF file served by the
llama-server binary at CAIRN_LLAMA_SERVER) the reflection model is that real model.

    uv run python bench/reflection.py [--conversations 1] [--sessions 0 (all)]
    CAIRN_REAL_MODEL=/path/model.gguf CAIRN_LLAMA_SERVER=/path/llama-server \\
        uv run python bench/reflection.py --sessions 3

The last line is one key=value line.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import re
import sys
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "tests"))

from cairn_fakes.llama import llama_server, real_model_from  # noqa: E402
from cairn_fakes.runner import FakeModelServer  # noqa: E402
from cairn_server.config import ServerSettings  # noqa: E402
from cairn_server.context.compaction import render_transcript  # noqa: E402
from cairn_server.context.tokens import count_tokens  # noqa: E402
from cairn_server.domain import ModelMessage  # noqa: E402
from cairn_server.memory.services import Memory  # noqa: E402
from cairn_server.providers.catalog import ModelCatalog  # noqa: E402
from cairn_server.runtime.reflection import chunks  # noqa: E402
from cairn_server.runtime.reflector import Reflector  # noqa: E402
from cairn_server.storage.db import open_database  # noqa: E402
from cairn_server.storage.models import Block, Message, Reflection  # noqa: E402
from cairn_server.storage.store import Store  # noqa: E402
from support.servers import call, script  # noqa: E402
from support.store import agent_in_conversation  # noqa: E402

LOCOMO = Path("/work/shared/data/locomo/locomo_dev.json")
REAL_MODEL = "openai/smollm2-135m-instruct"
FAKE_MODEL = "openai/gpt-4o-mini"
REAL_WINDOW = 8192
SINGLE_HOP = 4
EVIDENCE = re.compile(r"^D:?(\d+):(\d+)$")
STOPWORDS = frozenset(
    [
        "the",
        "and",
        "for",
        "with",
        "that",
        "this",
        "from",
        "was",
        "were",
        "are",
        "has",
        "have",
        "had",
        "her",
        "his",
        "their",
        "they",
        "them",
        "she",
        "him",
        "you",
        "your",
        "our",
        "its",
        "into",
        "onto",
        "about",
        "after",
        "before",
        "over",
        "also",
        "not",
        "but",
        "any",
        "all",
        "some",
    ]
)
WORD_SHARE = 0.8


@dataclass(frozen=True)
class Fact:
    question: str
    answer: str


@dataclass(frozen=True)
class Fed:
    """One LoCoMo conversation as stored: its messages and the facts they plant."""

    sample_id: str
    messages: list[ModelMessage]
    facts: list[Fact]
    repaired: list[str]


@dataclass(frozen=True)
class Outcome:
    sample_id: str
    facts: int
    exact: int
    words: int
    reflections: int
    reflection_tokens: int
    conversation_tokens: int
    cost_usd: float
    applied: int
    refused: int
    blocks: str
    failures: list[str]


# ----------------------------------------------------------------------------- LoCoMo


def sessions_of(conversation: dict[str, Any]) -> list[tuple[int, str, list[dict[str, Any]]]]:
    numbers = sorted(
        int(key.split("_")[1])
        for key in conversation
        if re.fullmatch(r"session_\d+", key) and conversation[key]
    )
    return [
        (n, str(conversation.get(f"session_{n}_date_time", "")), conversation[f"session_{n}"])
        for n in numbers
    ]


def evidence_sessions(evidence: list[str], repaired: list[str]) -> list[int] | None:
    """The sessions an item's evidence turns are in; None when an id cannot be read."""
    found = []
    for entry in evidence:
        if ";" in str(entry):
            repaired.append(str(entry))  # two ids in one: both are read
        for part in str(entry).split(";"):
            part = part.strip()
            match = EVIDENCE.match(part)
            if match is None:
                repaired.append(f"{part} (skipped)")
                return None
            if part.startswith("D:"):
                repaired.append(part)  # "D:11:26" read as D11:26
            found.append(int(match.group(1)))
    return found


def fed(item: dict[str, Any], sessions: int) -> Fed:
    conversation = item["conversation"]
    speaker_a = conversation["speaker_a"]
    kept = sessions_of(conversation)[: sessions or None]
    messages = []
    for number, date, turns in kept:
        for index, turn in enumerate(turns):
            text = f"{turn['speaker']}: {turn['text']}"
            if index == 0:
                text = f"[session {number}, {date}] {text}"
            a = turn["speaker"] == speaker_a
            messages.append(ModelMessage("user", text) if a else ModelMessage("assistant", text))
    numbers = {number for number, _, _ in kept}
    repaired: list[str] = []
    facts = []
    for qa in item["qa"]:
        if qa.get("category") != SINGLE_HOP or "answer" not in qa:
            continue
        where = evidence_sessions(qa.get("evidence", []), repaired)
        if where and set(where) <= numbers:
            facts.append(Fact(qa["question"], str(qa["answer"])))
    return Fed(item["sample_id"], messages, facts, repaired)


# ----------------------------------------------------------------------------- scoring


def normalised(text: str) -> str:
    return " ".join(re.sub(r"[^a-z0-9 ]+", " ", text.lower()).split())


def content_words(text: str) -> set[str]:
    return {w for w in normalised(text).split() if len(w) > 2 and w not in STOPWORDS}


def in_memory(fact: Fact, memory: str) -> tuple[bool, bool]:
    """(its answer appears exactly, WORD_SHARE of its content words appear)."""
    exact = normalised(fact.answer) in normalised(memory)
    words = content_words(fact.answer)
    share = len(words & content_words(memory)) / len(words) if words else float(exact)
    return exact, exact or share >= WORD_SHARE


# ----------------------------------------------------------------------------- the fake


def first_sentence(text: str, limit: int = 140) -> str:
    sentence = re.split(r"(?<=[.!?])\s", text.strip(), maxsplit=1)[0]
    return sentence if len(sentence) <= limit else sentence[: limit - 1] + "…"


def extractive_turn(chunk: list[Message], room: dict[str, int]) -> dict[str, Any]:
    """The fake's answer to one chunk: speaker A's first sentences into `human`, speaker B's
    into `project`, each within `room` characters."""
    calls = []
    for label, role in (("human", "user"), ("project", "assistant")):
        lines = [f"- {first_sentence(m.content)}" for m in chunk if m.role == role]
        text, used = [], 0
        for line in lines:
            if used + len(line) + 1 > room[label]:
                break
            text.append(line)
            used += len(line) + 1
        if text:
            calls.append(call("memory_insert", label=label, text="\n".join(text)))
    return {"text": "Noted.", "tool_calls": calls}


def fake_script(messages: list[Message], blocks: list[Block], budget: int) -> list[dict[str, Any]]:
    parts = chunks(messages, budget)
    room = {block.label: (block.char_limit - 50) // len(parts) for block in blocks}
    return [extractive_turn(chunk, room) for chunk in parts]


# ----------------------------------------------------------------------------- a run


def settings_for(base_url: str, model: str, chunk_tokens: int) -> ServerSettings:
    env = {
        "CAIRN_MODEL": model,
        "CAIRN_REFLECTION_MODEL": model,
        "OPENAI_BASE_URL": base_url,
        "OPENAI_API_KEY": "unused",
        "CAIRN_MODEL_RETRIES": "1",
    }
    return ServerSettings.from_env(env, reflection_chunk_tokens=chunk_tokens)


async def reflect_on(
    conversation: Fed,
    folder: Path,
    settings: ServerSettings,
    fake: FakeModelServer | None,
) -> Outcome:
    database = await open_database(f"sqlite+aiosqlite:///{folder / 'cairn.db'}")
    store, memory = Store(database), Memory.open(database)
    catalog = ModelCatalog(settings.model)
    reflector = Reflector(store, memory, catalog, settings, lambda _conversation: False)
    try:
        agent, conversation_id = await agent_in_conversation(store, memory)
        for message in conversation.messages:
            await store.add_message(conversation_id, None, message)
        stored = await store.list_messages(conversation_id)
        if fake is not None:
            blocks = await memory.blocks.list_blocks(agent.id)
            turns = fake_script(stored, blocks, settings.reflection_chunk_tokens)
            fake.set_script(script(*turns))
        rows = await reflect_to_the_end(reflector, agent, conversation_id, len(stored))
        blocks = await memory.blocks.list_blocks(agent.id)
    finally:
        await reflector.aclose()
        await catalog.aclose()
        await memory.aclose()
        await database.close()
    return outcome(conversation, stored, rows, blocks)


async def reflect_to_the_end(
    reflector: Reflector, agent: Any, conversation_id: str, total: int
) -> list[Reflection]:
    """Reflections until every message was read (each reads at most MAX_CHUNKS chunks)."""
    rows: list[Reflection] = []
    read = 0
    while read < total and len(rows) < total:
        row = await reflector.reflect(agent, conversation_id, "requested")
        rows.append(row)
        if row.status != "finished" or row.messages_read == 0:
            break
        read += row.messages_read
    return rows


def outcome(
    conversation: Fed, stored: list[Message], rows: list[Reflection], blocks: list[Block]
) -> Outcome:
    memory = "\n".join(block.value for block in blocks)
    scored = [in_memory(fact, memory) for fact in conversation.facts]
    edits = [edit for row in rows for edit in row.edits]
    return Outcome(
        sample_id=conversation.sample_id,
        facts=len(scored),
        exact=sum(exact for exact, _ in scored),
        words=sum(words for _, words in scored),
        reflections=len(rows),
        reflection_tokens=sum(row.input_tokens + row.output_tokens for row in rows),
        conversation_tokens=count_tokens(render_transcript(stored)),
        cost_usd=sum(row.cost_usd for row in rows),
        applied=sum(1 for edit in edits if edit.get("version") is not None),
        refused=sum(1 for edit in edits if edit.get("version") is None),
        blocks=", ".join(f"{b.label} {len(b.value)}/{b.char_limit}" for b in blocks),
        failures=[row.detail or "" for row in rows if row.status == "failed"],
    )


@contextmanager
def model_server(real: bool) -> Iterator[tuple[str, str, FakeModelServer | None]]:
    """(base URL, model spec, the fake or None) for the run."""
    model = real_model_from()
    if real and model is not None:
        with llama_server(model, context=REAL_WINDOW) as url:
            yield url, os.environ.get("CAIRN_REFLECTION_MODEL", REAL_MODEL), None
        return
    with FakeModelServer() as fake:
        yield fake.openai_base_url, FAKE_MODEL, fake


def report(outcomes: list[Outcome], mode: str, model: str) -> str:
    facts = sum(o.facts for o in outcomes) or 1
    exact = sum(o.exact for o in outcomes)
    words = sum(o.words for o in outcomes)
    spent = sum(o.reflection_tokens for o in outcomes)
    conversation = sum(o.conversation_tokens for o in outcomes) or 1
    for o in outcomes:
        print(
            f"{o.sample_id}: facts {o.facts}, in memory {o.exact} exact / {o.words} by words; "
            f"{o.reflections} reflections, {o.reflection_tokens:,} tokens for a "
            f"{o.conversation_tokens:,}-token conversation; edits {o.applied} made, "
            f"{o.refused} refused; blocks {o.blocks}"
        )
        for failure in o.failures:
            print(f"  failed: {failure}")
    if mode == "fake":
        print(
            "NOTE: the reflection model is the FAKE; its answers are scripted (an extractive "
            "stand-in), so this recall measures only the mechanics (chunking, edits applied "
            "within the blocks' limits, the watermark), NOT a model's quality."
        )
    pairs = {
        "mode": mode,
        "model": model,
        "conversations": len(outcomes),
        "facts": sum(o.facts for o in outcomes),
        "recall_exact": f"{exact / facts:.3f}",
        "recall_words": f"{words / facts:.3f}",
        "reflection_tokens": spent,
        "conversation_tokens": conversation,
        "token_ratio": f"{spent / conversation:.2f}",
        "edits_made": sum(o.applied for o in outcomes),
        "edits_refused": sum(o.refused for o in outcomes),
        "cost_usd": f"{sum(o.cost_usd for o in outcomes):.4f}",
    }
    return "reflection " + " ".join(f"{key}={value}" for key, value in pairs.items())


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--conversations", type=int, default=1)
    parser.add_argument("--sessions", type=int, default=0, help="sessions fed (0: all)")
    parser.add_argument("--chunk-tokens", type=int, default=3000)
    parser.add_argument("--data", type=Path, default=LOCOMO)
    args = parser.parse_args()
    items = json.loads(args.data.read_text(encoding="utf-8"))[: args.conversations]
    conversations = [fed(item, args.sessions) for item in items]
    repaired = sorted({r for c in conversations for r in c.repaired})
    if repaired:
        print(f"evidence ids repaired: {', '.join(repaired)}")
    real = real_model_from() is not None
    outcomes = []
    with model_server(real) as (url, model, fake), tempfile.TemporaryDirectory() as tmp:
        settings = settings_for(url, model, args.chunk_tokens)
        for index, conversation in enumerate(conversations):
            folder = Path(tmp) / str(index)
            folder.mkdir()
            outcomes.append(asyncio.run(reflect_on(conversation, folder, settings, fake)))
    print(report(outcomes, "real" if real else "fake", model))


if __name__ == "__main__":
    main()
