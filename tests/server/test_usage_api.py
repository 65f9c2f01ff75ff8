"""Budgets and usage over REST: an agent's context budget, its runs and their steps."""

from __future__ import annotations

from pathlib import Path

import httpx
from cairn_fakes.runner import FakeModelServer
from cairn_protocol import RunFinished, UserMessage
from support.servers import TEST_TOKEN, cairn_server, script, sqlite_url
from support.wire import WORKSPACE, connected

AUTH = {"Authorization": f"Bearer {TEST_TOKEN}"}


async def test_an_agents_budget_is_set_checked_and_reset(
    tmp_path: Path, fake_model: FakeModelServer
) -> None:
    with cairn_server(sqlite_url(tmp_path), fake_model, context_budget=30_000) as server:
        async with httpx.AsyncClient(base_url=server.url, headers=AUTH) as api:
            agent = (await api.post("/v1/agents", json=WORKSPACE.model_dump())).json()
            assert agent["context_budget"] == 30_000  # the default when it was created
            path = f"/v1/agents/{agent['id']}"

            too_big = await api.patch(path, json={"context_budget": 500_000})
            assert too_big.status_code == 422
            assert "openai/gpt-4o-mini" in too_big.json()["detail"]
            assert "at most 123904" in too_big.json()["detail"]
            too_small = await api.patch(path, json={"context_budget": 10})
            assert too_small.status_code == 422

            changed = await api.patch(path, json={"context_budget": 12_000})
            assert changed.status_code == 200 and changed.json()["context_budget"] == 12_000

            client, welcome = await connected(server.url)
            conversation = welcome.conversation_id
            report = (await api.get(f"/v1/conversations/{conversation}/context")).json()
            assert report["budget"] == 12_000
            await client.close()

            reset = await api.patch(path, json={"context_budget": None})
            assert reset.json()["context_budget"] is None
            report = (await api.get(f"/v1/conversations/{conversation}/context")).json()
            assert report["budget"] == 30_000


async def test_runs_and_steps_carry_usage_cost_and_cache_hits(
    tmp_path: Path, fake_model: FakeModelServer
) -> None:
    fake_model.set_script(script({"text": "One."}, {"text": "Two."}))
    with cairn_server(sqlite_url(tmp_path), fake_model) as server:
        client, welcome = await connected(server.url)
        conversation = welcome.conversation_id
        for text in ("first question", "second question"):
            await client.send(UserMessage(text=text))
            finished = await client.recv_until(RunFinished)
            assert isinstance(finished, RunFinished)
        await client.close()
        async with httpx.AsyncClient(base_url=server.url, headers=AUTH) as api:
            runs = (await api.get(f"/v1/conversations/{conversation}/runs")).json()
            assert [r["stop_reason"] for r in runs] == ["end_turn", "end_turn"]
            steps = (await api.get(f"/v1/runs/{runs[1]['id']}/steps")).json()
            missing = await api.get("/v1/runs/run_nope/steps")
    assert missing.status_code == 404
    assert len(steps) == 1 and steps[0]["step"] == 1
    step = steps[0]
    assert step["input_tokens"] > step["context_tokens"] * 0.8 > 0
    # The second run's prompt starts with the first's: the provider's cache serves it.
    assert step["cached_input_tokens"] >= 1024
    assert step["cost_usd"] > 0 and step["output_tokens"] > 0
    assert runs[1]["cost_usd"] == step["cost_usd"]
