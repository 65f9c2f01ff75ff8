"""The memory REST API on a real server: blocks, history, revert, errors, the context view."""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path

import httpx
import pytest
from cairn_fakes.runner import FakeModelServer
from cairn_protocol import RunFinished, UserMessage
from cairn_server.context.compiler import SECTION_ORDER
from support.servers import TEST_TOKEN, cairn_server, script, sqlite_url
from support.wire import WORKSPACE, connected

AUTH = {"Authorization": f"Bearer {TEST_TOKEN}"}


@pytest.fixture
async def api(tmp_path: Path, fake_model: FakeModelServer) -> AsyncIterator[httpx.AsyncClient]:
    with cairn_server(sqlite_url(tmp_path), fake_model) as server:
        async with httpx.AsyncClient(base_url=server.url, headers=AUTH) as client:
            client.cairn_url = server.url  # type: ignore[attr-defined]
            yield client


async def agent_id(api: httpx.AsyncClient) -> str:
    answer = await api.post("/v1/agents", json=WORKSPACE.model_dump())
    assert answer.status_code == 200, answer.text
    return str(answer.json()["id"])


async def test_agent_is_found_or_created_with_default_blocks(api: httpx.AsyncClient) -> None:
    first, second = await agent_id(api), await agent_id(api)
    assert first == second
    blocks = (await api.get(f"/v1/agents/{first}/blocks")).json()
    assert [b["label"] for b in blocks] == ["persona", "human", "project"]
    assert blocks[0]["chars"] == len(blocks[0]["value"]) > 0


async def test_block_lifecycle_with_history_diff_and_revert(api: httpx.AsyncClient) -> None:
    base = f"/v1/agents/{await agent_id(api)}/blocks"
    created = await api.post(base, json={"label": "team", "value": "Ana reviews", "char_limit": 50})
    assert created.status_code == 201 and created.json()["version"] == 1
    edited = await api.patch(
        f"{base}/team", json={"value": "Ana and Bo review", "reason": "Bo joined"}
    )
    assert edited.json()["version"] == 2
    history = (await api.get(f"{base}/team/history")).json()
    assert [(v["version"], v["action"], v["author_kind"], v["author"]) for v in history] == [
        (2, "edit", "user", "local"),
        (1, "create", "user", "local"),
    ]
    assert history[0]["reason"] == "Bo joined"
    diff = (await api.get(f"{base}/team/diff")).json()
    assert (diff["from_version"], diff["to_version"]) == (1, 2)
    assert "-Ana reviews" in diff["diff"] and "+Ana and Bo review" in diff["diff"]
    reverted = await api.post(f"{base}/team/revert", json={"version": 1})
    assert (reverted.json()["value"], reverted.json()["version"]) == ("Ana reviews", 3)
    assert (await api.delete(f"{base}/team")).status_code == 204
    assert (await api.get(f"{base}/team")).status_code == 404
    back = await api.post(f"{base}/team/revert", json={"version": 2})
    assert back.json()["value"] == "Ana and Bo review" and back.json()["version"] == 5


async def test_bad_requests_get_clear_statuses_and_change_nothing(api: httpx.AsyncClient) -> None:
    base = f"/v1/agents/{await agent_id(api)}/blocks"
    cases = [
        (api.get(f"{base}/nope"), 404, "the blocks are: human, persona, project"),
        (api.post(base, json={"label": "project"}), 409, "already exists"),
        (api.post(base, json={"label": "Bad Label"}), 422, "invalid block label"),
        (api.patch(f"{base}/human", json={"value": "x" * 2001}), 422, "1 over its limit"),
        (api.patch(f"{base}/human", json={"value": "x", "expected_version": 7}), 409, "version"),
        (api.get(f"{base}/human/versions/9"), 404, "no version 9"),
        (api.post(f"{base}/human/revert", json={"version": 9}), 404, "no version 9"),
    ]
    for request, status, message in cases:
        answer = await request
        assert answer.status_code == status, answer.text
        assert message in str(answer.json()["detail"])
    human = (await api.get(f"{base}/human")).json()
    assert (human["version"], human["value"]) == (1, "")


async def test_another_users_agent_and_a_missing_token_are_refused(api: httpx.AsyncClient) -> None:
    agent = await agent_id(api)
    assert (await api.get("/v1/agents/agt_missing/blocks")).status_code == 404
    bare = httpx.AsyncClient(base_url=str(api.base_url))
    assert (await bare.get(f"/v1/agents/{agent}/blocks")).status_code == 401
    await bare.aclose()


async def test_context_view_counts_every_section_against_the_budget(
    api: httpx.AsyncClient, fake_model: FakeModelServer
) -> None:
    fake_model.set_script(script({"text": "Hello there."}))
    client, welcome = await connected(api.cairn_url)  # type: ignore[attr-defined]
    await client.send(UserMessage(text="hello"))
    await client.recv_until(RunFinished)
    report = (await api.get(f"/v1/conversations/{welcome.conversation_id}/context")).json()
    names = [s["name"] for s in report["sections"]]
    assert names == list(SECTION_ORDER)
    tokens = {s["name"]: s["tokens"] for s in report["sections"]}
    assert report["total_tokens"] == sum(tokens.values())
    assert tokens["instructions"] > 50 and tokens["memory_blocks"] > 20 and tokens["summary"] == 0
    tools = next(s for s in report["sections"] if s["name"] == "tools")
    assert {"read", "memory_replace"} <= {item["name"] for item in tools["items"]}
    messages = next(s for s in report["sections"] if s["name"] == "messages")
    # the first meeting's note to learn the repository, then the exchange
    assert [item["name"] for item in messages["items"]] == ["event", "user", "assistant"]
    assert report["tokenizer"] == "cl100k_base" and report["budget"] == 100_000
    await client.close()
