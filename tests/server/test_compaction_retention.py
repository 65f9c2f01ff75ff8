"""Compaction never loses the task: facts and rules planted early survive ten compactions.

A long session through the real server, the fake OpenAI model and a fake summary model
(Anthropic) that forgets most of what it was told, or fails so the digest is used; the last
request the model received must still carry every planted item, and every request the core
memory blocks as they are.
"""

from __future__ import annotations

import json
from pathlib import Path

from cairn_fakes.runner import FakeModelServer
from support.planted import (
    PLANTED,
    USER_TURNS,
    forgetful_summaries,
    model_script,
    planted_session,
    request_text,
    retained,
)
from support.servers import cairn_server, script, sqlite_url, with_summaries

BUDGET = 6000
TURNS = 36


async def run_session(
    tmp_path: Path, fake_model: FakeModelServer, summaries: FakeModelServer
) -> tuple[list[str], dict[str, str], int]:
    fake_model.set_script(model_script(TURNS))
    settings = with_summaries(summaries)
    with cairn_server(
        sqlite_url(tmp_path), fake_model, context_budget=BUDGET, **settings
    ) as server:
        session = await planted_session(server.url, TURNS)
    assert {f.stop_reason for f in session.finished} == {"end_turn"}
    assert len(session.compactions) >= 10
    systems = [r.body["messages"][0]["content"] for r in fake_model.requests]
    return systems, session.blocks, len(session.compactions)


def assert_memory_is_never_summarised(
    systems: list[str], blocks: dict[str, str], summaries: FakeModelServer
) -> None:
    """Each block is in every request as it is, in the memory section, and in no request
    to the summary model."""
    for label, value in blocks.items():
        if not value:
            continue
        rendered = f"<value>\n{value}\n</value>"
        assert all(rendered in system for system in systems), label
        assert not any(value in json.dumps(r.body) for r in summaries.requests), label


async def test_ten_compactions_by_a_forgetful_summariser_keep_every_planted_item(
    tmp_path: Path, fake_model: FakeModelServer, summaries: FakeModelServer
) -> None:
    summaries.set_script(forgetful_summaries(60))
    systems, blocks, compactions = await run_session(tmp_path, fake_model, summaries)

    # The summary model saw the planted results before it (once) wrote them down.
    first_transcript = json.dumps(summaries.requests[0].body)
    assert "RETRY_LIMIT = 7" in first_transcript and "6543" in first_transcript
    assert len(summaries.requests) == compactions
    last = fake_model.requests[-1].body
    assert [item.name for item in retained(last)] == [item.name for item in PLANTED]
    # Not because the planted turns are still there: they were compacted long ago.
    assert not any(turn in json.dumps(last["messages"][1:]) for turn in USER_TURNS)
    for heading in ("## Task", "## Next step", "## Decisions and rules", "## Files touched"):
        assert heading in systems[-1]
    assert_memory_is_never_summarised(systems, blocks, summaries)


async def test_ten_digest_compactions_keep_the_task_rules_and_files(
    tmp_path: Path, fake_model: FakeModelServer, summaries: FakeModelServer
) -> None:
    refusal = {"error": {"status": 400, "message": "summaries are off today"}}
    summaries.set_script(script(*[refusal] * 200))
    systems, blocks, _ = await run_session(tmp_path, fake_model, summaries)

    assert "Compacted without a model summary" in systems[-1]
    kept = {item.name for item in retained(fake_model.requests[-1].body)}
    # Facts that lived only in tool results need a model to be noticed; everything else stays.
    expected = {item.name for item in PLANTED if not item.name.startswith("fact:")}
    assert kept >= expected
    assert "## Task" in systems[-1] and "## The user's words" in systems[-1]
    assert "survive a currency switch" in request_text(fake_model.requests[-1].body)
    assert_memory_is_never_summarised(systems, blocks, summaries)
