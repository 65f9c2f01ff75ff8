"""The REST client against a real server: agents, blocks and their history, passages, recall,
context, and failures turned into one clear ApiError.
"""

from __future__ import annotations

import socket
import uuid
from collections.abc import AsyncIterator

import pytest
from cairn_client.api import ApiError, CairnApi
from cairn_protocol import RunFinished, WorkspaceIdentity
from cairn_protocol.messages import UserMessage, Welcome
from cairn_protocol.rest import AgentPublic
from cairn_server.context.compiler import SECTION_ORDER
from support.servers import TEST_TOKEN, Served, script
from support.wire import WireClient


@pytest.fixture
async def api(served: Served) -> AsyncIterator[CairnApi]:
    async with CairnApi(served.url, TEST_TOKEN) as client:
        yield client


def new_workspace(name: str = "shop") -> WorkspaceIdentity:
    return WorkspaceIdentity(
        root_commit=uuid.uuid4().hex + "00000000",
        origin=f"example.com/acme/{name}",
        display_name=name,
        path=f"/tmp/{name}",
    )


@pytest.fixture
async def agent(api: CairnApi) -> AgentPublic:
    return await api.ensure_agent(new_workspace())


async def test_ensure_agent_is_idempotent_and_starts_with_the_default_blocks(
    api: CairnApi,
) -> None:
    workspace = new_workspace("billing")
    first = await api.ensure_agent(workspace)
    again = await api.ensure_agent(workspace.model_copy(update={"path": "/elsewhere/billing"}))
    assert again.id == first.id
    assert first.display_name == "billing"
    assert (await api.get_agent(first.id)).codebase_key == workspace.key
    assert first.id in [listed.id for listed in await api.list_agents()]

    blocks = await api.list_blocks(first.id)
    assert [block.label for block in blocks][:3] == ["persona", "human", "project"]
    assert all(block.version >= 1 and block.char_limit > 0 for block in blocks)


async def test_a_block_edited_reverted_deleted_and_brought_back_keeps_every_version(
    api: CairnApi, agent: AgentPublic
) -> None:
    created = await api.create_block(
        agent.id, "testing", value="run pytest\n", description="How to test", char_limit=200
    )
    assert (created.label, created.version, created.chars, created.char_limit) == (
        "testing",
        1,
        11,
        200,
    )
    edited = await api.update_block(
        agent.id,
        "testing",
        value="run uv run pytest -q\n",
        expected_version=1,
        reason="uv now",
    )
    assert edited.version == 2
    assert (await api.get_block(agent.id, "testing")).value == "run uv run pytest -q\n"

    diff = await api.block_diff(agent.id, "testing")
    assert (diff.from_version, diff.to_version) == (1, 2)
    assert "-run pytest" in diff.diff and "+run uv run pytest -q" in diff.diff

    reverted = await api.revert_block(agent.id, "testing", 1)
    assert (reverted.version, reverted.value) == (3, "run pytest\n")

    await api.delete_block(agent.id, "testing")
    with pytest.raises(ApiError) as gone:
        await api.get_block(agent.id, "testing")
    assert gone.value.not_found

    back = await api.revert_block(agent.id, "testing", 2)
    assert back.value == "run uv run pytest -q\n"

    history = await api.block_history(agent.id, "testing")
    assert [(v.version, v.action) for v in history] == [
        (5, "revert"),
        (4, "delete"),
        (3, "revert"),
        (2, "edit"),
        (1, "create"),
    ]
    assert {v.author_kind for v in history} == {"user"}
    assert history[3].reason == "uv now"
    assert (await api.block_version(agent.id, "testing", 2)).value == "run uv run pytest -q\n"


async def test_a_stale_expected_version_is_a_conflict_and_changes_nothing(
    api: CairnApi, agent: AgentPublic
) -> None:
    await api.update_block(agent.id, "project", value="theirs", expected_version=1)
    with pytest.raises(ApiError) as stale:
        await api.update_block(agent.id, "project", value="mine", expected_version=1)
    assert stale.value.conflict
    assert "\n" not in str(stale.value)
    current = await api.get_block(agent.id, "project")
    assert (current.version, current.value) == (2, "theirs")


@pytest.mark.parametrize(
    ("attempt", "status", "words"),
    [
        ("unknown label", 404, "nope"),
        ("taken label", 409, "project"),
        ("over the limit", 422, "limit"),
        ("malformed label", 422, "label"),
    ],
)
async def test_errors_carry_the_status_and_the_servers_message(
    api: CairnApi, agent: AgentPublic, attempt: str, status: int, words: str
) -> None:
    with pytest.raises(ApiError) as refused:
        if attempt == "unknown label":
            await api.get_block(agent.id, "nope")
        elif attempt == "taken label":
            await api.create_block(agent.id, "project")
        elif attempt == "over the limit":
            await api.create_block(agent.id, "tiny", char_limit=5)
            await api.update_block(agent.id, "tiny", value="far too long")
        else:
            await api.create_block(agent.id, "Not A Label!")
    assert refused.value.status == status
    assert words in refused.value.detail.lower()
    assert "\n" not in refused.value.detail


async def test_an_unreachable_server_is_one_clear_line() -> None:
    with socket.socket() as probe:  # a port nothing listens on
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    async with CairnApi(f"http://127.0.0.1:{port}", TEST_TOKEN) as api:
        with pytest.raises(ApiError) as refused:
            await api.list_agents()
    assert refused.value.status is None
    assert str(refused.value) == (
        f"cannot reach the Cairn server at http://127.0.0.1:{port}: connection refused"
    )


async def test_a_wrong_token_is_refused(served: Served) -> None:
    async with CairnApi(served.url, "not-the-token") as api:
        with pytest.raises(ApiError) as refused:
            await api.list_agents()
    assert refused.value.status == 401
    assert "token" in refused.value.detail


async def test_a_server_that_cannot_be_started_is_reported_as_such() -> None:
    async def failing_start() -> str:
        raise RuntimeError("the local server failed to start; see server.log")

    async with CairnApi(failing_start, TEST_TOKEN) as api:
        with pytest.raises(ApiError, match="failed to start; see server.log"):
            await api.list_agents()


async def test_passages_are_kept_searched_and_deleted(api: CairnApi, agent: AgentPublic) -> None:
    kept = await api.create_passage(agent.id, "The build uses make and a Docker image.", ["build"])
    await api.create_passage(agent.id, "Invoices are rounded to cents.", ["billing"])
    hits = await api.list_passages(agent.id, query="docker build")
    assert [hit.id for hit in hits][:1] == [kept.id]
    assert hits[0].score is not None

    tagged = await api.list_passages(agent.id, tags=["billing"])
    assert [p.text for p in tagged] == ["Invoices are rounded to cents."]
    await api.create_passage(agent.id, "EU invoices carry VAT.", ["billing", "eu"])
    both = await api.list_passages(agent.id, tags=["billing", "eu"])
    assert [p.text for p in both] == ["EU invoices carry VAT."]  # every tag, not the first

    await api.delete_passage(agent.id, kept.id)
    assert kept.id not in [p.id for p in await api.list_passages(agent.id)]
    with pytest.raises(ApiError) as gone:
        await api.delete_passage(agent.id, kept.id)
    assert gone.value.not_found


async def test_messages_are_searchable_and_the_context_shows_every_section(
    api: CairnApi, served: Served
) -> None:
    workspace = new_workspace("flux")
    agent = await api.ensure_agent(workspace)
    await api.update_block(agent.id, "project", value="A time machine.")
    served.fake.set_script(script({"text": "Noted: 1.21 gigawatts."}))
    client = await WireClient.connect(served.url)
    try:
        welcome = await client.hello(workspace=workspace)
        assert isinstance(welcome, Welcome)
        await client.send(UserMessage(text="the flux capacitor needs 1.21 gigawatts"))
        await client.recv_until(RunFinished, timeout=20)
    finally:
        await client.close()

    hits = await api.search_messages(agent.id, "capacitor")
    assert ("user", "the flux capacitor needs 1.21 gigawatts") in [
        (hit.role, hit.content) for hit in hits
    ]
    assert {hit.conversation_id for hit in hits} == {welcome.conversation_id}
    answers = await api.search_messages(agent.id, "capacitor", roles=["assistant"])
    assert {hit.role for hit in answers} <= {"assistant"}
    with pytest.raises(ApiError) as bad:
        await api.search_messages(agent.id, "capacitor", start_date="yesterday")
    assert bad.value.status == 422

    conversations = await api.list_conversations(agent.id)
    assert [c.id for c in conversations] == [welcome.conversation_id]
    report = await api.context(welcome.conversation_id)
    assert [section.name for section in report.sections] == list(SECTION_ORDER)
    assert report.budget > 0
    assert report.total_tokens == sum(section.tokens for section in report.sections)
    blocks = next(s for s in report.sections if s.name == "memory_blocks")
    assert "A time machine." in blocks.text
    tools = next(s for s in report.sections if s.name == "tools")
    assert {"read", "memory_replace"} <= {item.name for item in tools.items}


async def test_the_context_counts_each_memory_block_as_an_item(
    api: CairnApi, served: Served
) -> None:
    workspace = new_workspace("blocks")
    client = await WireClient.connect(served.url)
    try:
        welcome = await client.hello(workspace=workspace)
        assert isinstance(welcome, Welcome)
    finally:
        await client.close()
    report = await api.context(welcome.conversation_id)
    blocks = next(s for s in report.sections if s.name == "memory_blocks")
    assert [item.name for item in blocks.items] == ["persona", "human", "project"]
