"""Memory never keeps a secret: what the model writes into blocks and passages, and what a
person writes over REST, is stored with its secrets cut, and the writer is told so.

Through the real server, its SQLite store and the fake model. (Compaction summaries: see
test_compaction.py.)
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import httpx
from cairn_fakes.runner import FakeModelServer
from cairn_protocol import RunFinished, UserMessage
from support.servers import TEST_TOKEN, cairn_server, call, script, sqlite_url
from support.wire import WORKSPACE, WireClient

GITHUB = "ghp_" + "Q8mVt3LxR7wN2cK9pZ4bH6yJ1dF5gS0aE3uT"
OPENAI = "sk-proj-" + "Rm4Tq8Vx2Lp6Nz0Wc3Yb7Hd1Jf5Kg9Ss"
DB_PASSWORD = "Wq7Rz2Lm9Xc4Tv"
AWS_SECRET = "Jx7Qm2Rz9Lc4Tv8Wn1Yb6Hd3Kf5Gs0Pa2Ue9Xi4o"
AUTH = {"Authorization": f"Bearer {TEST_TOKEN}"}
PLANTED = (GITHUB, OPENAI, DB_PASSWORD)


async def test_what_the_model_writes_into_memory_is_stored_without_secrets(
    tmp_path: Path, fake_model: FakeModelServer
) -> None:
    fake_model.set_script(
        script(
            {"tool_calls": [call("memory_insert", label="project", text=f"CI: GH={GITHUB}")]},
            {"tool_calls": [call("memory_rethink", label="human", new_value=f"key {OPENAI}")]},
            {
                "tool_calls": [
                    call(
                        "archival_insert",
                        text=f"staging: postgres://app:{DB_PASSWORD}@db.internal/app",
                        tags=["ops"],
                    )
                ]
            },
            {"text": "Noted, without the secrets."},
        )
    )
    with cairn_server(sqlite_url(tmp_path), fake_model) as server:
        client = await WireClient.connect(server.url)
        await client.hello()
        await client.send(UserMessage(text="remember how CI and staging log in"))
        await client.recv_until(RunFinished, timeout=20)
        await client.close()
        stored = await _memory_as_json(server.url)

    answers = _tool_answers(fake_model.requests[-1].body)
    assert len(answers) == 3
    for answer in answers:
        assert "1 secret redacted before storing" in answer, answer
        assert not any(secret in answer for secret in PLANTED)
    assert "+CI: GH=[REDACTED:github-token]" in answers[0]
    for secret in PLANTED:
        assert secret not in stored, secret
    for kind in ("github-token", "openai-key", "secret-value"):
        assert f"[REDACTED:{kind}]" in stored


async def test_a_person_writing_a_secret_over_rest_is_told_it_was_cut(
    tmp_path: Path, fake_model: FakeModelServer
) -> None:
    with cairn_server(sqlite_url(tmp_path), fake_model) as server:
        async with httpx.AsyncClient(base_url=server.url, headers=AUTH) as api:
            base = f"/v1/agents/{await _agent_id(api)}"
            created = await api.post(
                f"{base}/blocks",
                json={"label": "ops", "value": f"DATABASE_URL=mysql://app:{DB_PASSWORD}@db/app"},
            )
            changed = await api.patch(
                f"{base}/blocks/ops", json={"value": f"aws_secret_access_key = {AWS_SECRET}"}
            )
            plain = await api.patch(f"{base}/blocks/ops", json={"value": "Deploys on Fridays"})
            back = await api.post(f"{base}/blocks/ops/revert", json={"version": 2})
            kept = await api.post(f"{base}/passages", json={"text": f"CI uses {GITHUB}"})
            history = (await api.get(f"{base}/blocks/ops/history")).text

    assert created.status_code == 201 and changed.status_code == 200, created.text
    assert [r.json()["secrets_redacted"] for r in (created, changed, plain, back, kept)] == [
        1,
        1,
        0,
        0,  # version 2 was stored without its secret
        1,
    ]
    assert created.json()["value"] == "DATABASE_URL=mysql://app:[REDACTED:secret-value]@db/app"
    assert changed.json()["value"] == "aws_secret_access_key = [REDACTED:aws-secret-key]"
    assert kept.json()["text"] == "CI uses [REDACTED:github-token]"
    for secret in (DB_PASSWORD, AWS_SECRET):
        assert secret not in history


async def _agent_id(api: httpx.AsyncClient) -> str:
    answer = await api.post("/v1/agents", json=WORKSPACE.model_dump())
    assert answer.status_code == 200, answer.text
    return str(answer.json()["id"])


async def _memory_as_json(url: str) -> str:
    """Every block with its whole history, and every passage, as the REST API returns them."""
    async with httpx.AsyncClient(base_url=url, headers=AUTH) as api:
        base = f"/v1/agents/{await _agent_id(api)}"
        blocks = (await api.get(f"{base}/blocks")).json()
        histories = [
            (await api.get(f"{base}/blocks/{block['label']}/history")).json() for block in blocks
        ]
        passages = (await api.get(f"{base}/passages")).json()
    return json.dumps([blocks, histories, passages])


def _tool_answers(body: dict[str, Any]) -> list[str]:
    return [str(m["content"]) for m in body["messages"] if m.get("role") == "tool"]
