"""What a deployed server tells its operators: /v1/ready for a load balancer, and Prometheus
metrics at /metrics when CAIRN_METRICS is on (runs, steps, the model's and the tools' waits,
a step's own time, connections)."""

from __future__ import annotations

import httpx
import pytest
from cairn_fakes.runner import FakeModelServer
from cairn_protocol import RunFinished, ToolRequest, ToolResult, UserMessage
from cairn_server.runtime.runtime import Runtime
from support.servers import cairn_server, read_then_answer
from support.wire import connected


def sample(text: str, name: str) -> float:
    """The value of the metric line `name` (labels included in the name, if any)."""
    [line] = [line for line in text.splitlines() if line.split(" ")[0] == name]
    return float(line.split(" ")[1])


@pytest.mark.parametrize("database_url", ["sqlite"], indirect=True)
async def test_the_metrics_count_a_runs_steps_and_waits(
    database_url: str, fake: FakeModelServer
) -> None:
    fake.set_script(read_then_answer())
    with cairn_server(database_url, fake, env={"CAIRN_METRICS": "1"}) as server:
        client, _ = await connected(server.url, conversation="new")
        try:
            await client.send(UserMessage(text="What does app.py do?"))
            request = await client.recv_until(ToolRequest)
            await client.send(ToolResult(call_id=request.call_id, status="ok", content="x = 1"))
            finished = await client.recv_until(RunFinished)
            async with httpx.AsyncClient() as http:
                answer = await http.get(f"{server.url}/metrics")
        finally:
            await client.close()
    assert finished.stop_reason == "end_turn"
    assert answer.status_code == 200 and answer.headers["content-type"].startswith("text/plain")
    text = answer.text
    assert sample(text, "cairn_steps_total") == 2
    assert sample(text, "cairn_model_call_seconds_count") == 2
    assert sample(text, "cairn_tool_wait_seconds_count") == 1
    assert sample(text, "cairn_step_overhead_seconds_count") == 2
    assert sample(text, "cairn_active_runs") == 0
    assert sample(text, "cairn_orphaned_runs_ended_total") == 0
    assert sample(text, "cairn_open_connections") >= 1  # the scrape itself, at least


async def test_metrics_are_off_unless_asked_and_ready_says_why_it_is_not(
    database_url: str, fake: FakeModelServer
) -> None:
    with cairn_server(database_url, fake) as server:
        async with httpx.AsyncClient() as http:
            off = await http.get(f"{server.url}/metrics")
            ready = await http.get(f"{server.url}/v1/ready")
            runtime: Runtime = server.app.state.runtime

            async def unreachable() -> None:
                raise ConnectionRefusedError("connection refused")

            runtime.store.ping = unreachable  # type: ignore[method-assign]
            down = await http.get(f"{server.url}/v1/ready")
    assert off.status_code == 404 and "CAIRN_METRICS=1" in off.json()["detail"]
    assert (ready.status_code, ready.json()) == (200, {"status": "ready"})
    assert down.status_code == 503
    assert down.json()["detail"] == (
        "the database does not answer (ConnectionRefusedError: connection refused)"
    )
