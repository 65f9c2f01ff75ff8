"""The approval audit trail: a tool result's approval record is stored with its run and listed
over REST to the run's owner only, on SQLite and on PostgreSQL."""

from __future__ import annotations

import hashlib
from datetime import UTC, datetime, timedelta

import httpx
import pytest
from cairn_fakes.runner import FakeModelServer
from cairn_protocol import ErrorEvent, RunFinished, ToolResult
from cairn_protocol.messages import ApprovalRecord
from cairn_server.storage.db import open_database
from cairn_server.storage.store import Store
from support.servers import TEST_TOKEN, cairn_server, call, script
from support.wire import asked_for_a_tool

AUTH = {"Authorization": f"Bearer {TEST_TOKEN}"}
COMMAND = "pytest -q tests/test_app.py"


def denial(reason: str) -> ApprovalRecord:
    asked = datetime(2026, 11, 29, 9, 30, tzinfo=UTC)
    return ApprovalRecord(
        decision="deny",
        decided_by="user",
        answer="deny",
        reason=reason,
        shown_title="Run shell command",
        shown=COMMAND,
        content_hash="sha256:" + hashlib.sha256(COMMAND.encode()).hexdigest(),
        asked_at=asked,
        decided_at=asked + timedelta(seconds=4),
    )


async def another_users_token(database_url: str) -> str:
    database = await open_database(database_url)
    try:
        return await Store(database).create_token("mallory")
    finally:
        await database.close()


async def test_an_approval_is_stored_with_its_run_and_listed_to_its_owner_only(
    database_url: str, fake_model: FakeModelServer
) -> None:
    fake_model.set_script(
        script(
            {"text": "Testing.", "tool_calls": [call("shell", command=COMMAND)]},
            {"text": "You said no."},
        )
    )
    with cairn_server(database_url, fake_model) as server:
        client, request = await asked_for_a_tool(server.url, "run the tests")
        record = denial("use the helper instead")
        await client.send(
            ToolResult(
                call_id=request.call_id, status="denied", reason=record.reason, approval=record
            )
        )
        await client.recv_until(RunFinished)
        # A second answer to the settled call is refused, and its record is not kept.
        await client.send(
            ToolResult(call_id=request.call_id, status="denied", approval=denial("again"))
        )
        refused = await client.recv_until(ErrorEvent)
        assert isinstance(refused, ErrorEvent) and refused.code == "unknown_call"
        await client.close()

        path = f"/v1/runs/{request.run_id}/approvals"
        async with httpx.AsyncClient(base_url=server.url, headers=AUTH) as api:
            listed = (await api.get(path)).json()
            assert (await api.get("/v1/runs/run_nope/approvals")).status_code == 404
        stranger = {"Authorization": f"Bearer {await another_users_token(database_url)}"}
        async with httpx.AsyncClient(base_url=server.url, headers=stranger) as api:
            hidden = await api.get(path)

    assert hidden.status_code == 404
    assert len(listed) == 1
    stored = listed[0]
    assert (stored["run_id"], stored["call_id"], stored["tool"]) == (
        request.run_id,
        request.call_id,
        "shell",
    )
    assert ApprovalRecord.model_validate(
        {name: stored[name] for name in ApprovalRecord.model_fields}
    ) == denial("use the helper instead")


@pytest.mark.parametrize("database_url", ["sqlite"], indirect=True)
async def test_a_result_without_a_record_stores_none(
    database_url: str, fake_model: FakeModelServer
) -> None:
    fake_model.set_script(
        script({"text": "Reading.", "tool_calls": [call("read", path="a.py")]}, {"text": "Done."})
    )
    with cairn_server(database_url, fake_model) as server:
        client, request = await asked_for_a_tool(server.url, "read a.py")
        await client.send(ToolResult(call_id=request.call_id, status="ok", content="x = 1"))
        await client.recv_until(RunFinished)
        await client.close()
        async with httpx.AsyncClient(base_url=server.url, headers=AUTH) as api:
            listed = await api.get(f"/v1/runs/{request.run_id}/approvals")

    assert listed.status_code == 200 and listed.json() == []
