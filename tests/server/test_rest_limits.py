"""Every REST route refuses what it cannot take with 422, never a 500: NUL in a path or query
parameter, integers beyond what the database holds, negative counts. Text in bodies may hold
NUL: it is stored and read back as sent.

The routes come from the running server's own OpenAPI document, so a new route is covered.
Runs on SQLite and PostgreSQL.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import Any
from urllib.parse import quote

import httpx
import pytest
from cairn_fakes.runner import FakeModelServer
from cairn_protocol import RunFinished, UserMessage, Welcome
from support.servers import TEST_TOKEN, cairn_server, script
from support.wire import WORKSPACE, WireClient

AUTH = {"Authorization": f"Bearer {TEST_TOKEN}"}
HUGE = 2**63  # past every integer column (and SQLite's own integers)
BODIES = {  # a valid body for each route that takes one, so only the parameter is wrong
    ("patch", "/v1/agents/{agent_id}"): {"context_budget": None},
    ("post", "/v1/agents/{agent_id}/blocks"): {"label": "fresh"},
    ("patch", "/v1/agents/{agent_id}/blocks/{label}"): {"value": "v"},
    ("post", "/v1/agents/{agent_id}/blocks/{label}/revert"): {"version": 1},
    ("post", "/v1/agents/{agent_id}/passages"): {"text": "kept"},
    ("put", "/v1/agents/{agent_id}/mcp-servers/{name}"): {"url": "http://127.0.0.1:9/mcp"},
}


@pytest.fixture
async def api(
    database_url: str, fake_model: FakeModelServer
) -> AsyncIterator[tuple[httpx.AsyncClient, dict[str, str]]]:
    """A client of a server holding one of everything, and valid values for every parameter."""
    fake_model.set_script(script({"text": "hello"}))
    with cairn_server(database_url, fake_model) as server:
        wire = await WireClient.connect(server.url)
        welcome = await wire.hello()
        await wire.send(UserMessage(text="hi"))
        finished = await wire.recv_until(RunFinished)
        await wire.close()
        assert isinstance(welcome, Welcome) and isinstance(finished, RunFinished)
        async with httpx.AsyncClient(base_url=server.url, headers=AUTH) as client:
            passage = await client.post(
                f"/v1/agents/{welcome.agent_id}/passages",
                json={"text": "a passage"},
            )
            valid = {
                "agent_id": welcome.agent_id,
                "conversation_id": welcome.conversation_id,
                "run_id": finished.run_id,
                "passage_id": str(passage.json()["id"]),
                "label": "human",
                "version": "1",
                "from_version": "1",
                "to_version": "1",
                "query": "hello",
                "tag": "t",
                "role": "user",
                "start_date": "2026-01-01",
                "end_date": "2026-12-31",
                "limit": "5",
                "offset": "0",
                # the codebase of POST /agents/import (a workspace identity) and its switch
                "root_commit": "b" * 40,
                "origin": "example.com/acme/other",
                "display_name": "other",
                "path": "/tmp/other",
                "replace": "false",
                "raise_limits": "false",
                "name": "docs",
            }
            yield client, valid


def hostile_values(schema: dict[str, Any]) -> list[str]:
    kinds = {option.get("type") for option in schema.get("anyOf", [schema])}
    values = ["a\x00b"]
    if "integer" in kinds:
        values += [str(HUGE), str(-HUGE), "-1"]
    return values


async def test_every_parameter_of_every_route_refuses_what_it_cannot_take(
    api: tuple[httpx.AsyncClient, dict[str, str]],
) -> None:
    client, valid = api
    document = (await client.get("/openapi.json")).json()
    tried = 0
    for path, operations in document["paths"].items():
        for method, operation in operations.items():
            parameters = operation.get("parameters", [])
            for wrong in parameters:
                for value in hostile_values(wrong["schema"]):
                    values = {p["name"]: valid[p["name"]] for p in parameters}
                    values[wrong["name"]] = value
                    url = path.format(**{k: quote(v, safe="") for k, v in values.items()})
                    query = {p["name"]: values[p["name"]] for p in parameters if p["in"] == "query"}
                    answer = await client.request(
                        method, url, params=query, json=BODIES.get((method, path))
                    )
                    where = f"{method.upper()} {path} with {wrong['name']}={value!r}"
                    assert answer.status_code == 422, f"{where}: {answer.status_code} {answer.text}"
                    assert wrong["name"] in answer.text, f"{where}: {answer.text}"
                    tried += 1
    assert tried > 60


async def test_integers_in_bodies_past_what_is_stored_are_refused(
    api: tuple[httpx.AsyncClient, dict[str, str]],
) -> None:
    client, valid = api
    agent = f"/v1/agents/{valid['agent_id']}"
    for method, url, body in [
        ("patch", agent, {"context_budget": HUGE}),
        ("patch", f"{agent}/blocks/human", {"value": "x", "expected_version": HUGE}),
        ("post", f"{agent}/blocks/human/revert", {"version": HUGE}),
        ("post", f"{agent}/blocks", {"label": "big", "char_limit": HUGE}),
    ]:
        answer = await client.request(method, url, json=body)
        assert answer.status_code == 422, (url, body, answer.text)


async def test_nul_in_body_text_is_kept_as_sent(
    api: tuple[httpx.AsyncClient, dict[str, str]],
) -> None:
    client, valid = api
    blocks = f"/v1/agents/{valid['agent_id']}/blocks"
    created = await client.post(
        blocks, json={"label": "raw", "value": "a\x00b", "description": "\x00"}
    )
    assert created.status_code == 201, created.text
    read = (await client.get(f"{blocks}/raw")).json()
    assert (read["value"], read["description"], read["chars"]) == ("a\x00b", "\x00", 3)
    assert (await client.post(blocks, json={"label": "a\x00"})).status_code == 422
    workspace = WORKSPACE.model_copy(update={"root_commit": "d" * 40, "display_name": "x\x00"})
    agent = await client.post("/v1/agents", json=workspace.model_dump())
    assert agent.status_code == 200 and agent.json()["display_name"] == "x\x00"
