"""fetch_url through the user's policy: a real client session approves (or not) what the real
server then fetches from a real web site on loopback, the model's calls scripted by the fake.

Each test has its own repository (so its own agent) on one server that may reach the site.
"""

from __future__ import annotations

import hashlib
import io
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from cairn_client.headless import HeadlessListener, run_headless
from cairn_client.policy.policy import Policy
from cairn_client.policy.settings import PolicySettings, SettingsError, parse_rule
from cairn_client.policy.types import Approval
from cairn_client.tools.registry import prepare_call
from cairn_client.tui.screens.approval import ApprovalScreen
from cairn_fakes.runner import FakeModelServer
from cairn_protocol import (
    AssistantMessage,
    HistoryToolCall,
    RunFinished,
    RunStarted,
    ToolRequest,
    ToolResult,
    ToolSettled,
    UserMessage,
    WorkspaceIdentity,
)
from cairn_server.domain import ModelMessage, ToolCall
from cairn_server.storage.db import open_database
from cairn_server.storage.store import Store
from support.listener import RecordingListener
from support.scripted_tui import THIS_CLIENT, asked, scripted_run, settle
from support.servers import Served, cairn_server, call, script, sqlite_url
from support.sessions import client_session, one_request
from support.settings import policy_for
from support.tui import chat_entries, rendered_text, tool_entries
from support.waiting import until
from support.web_site import WebSite
from support.wire import connected
from textual.widgets import Label, Static


@pytest.fixture(scope="module")
def site() -> Iterator[WebSite]:
    with WebSite() as served:
        yield served


@pytest.fixture(scope="module")
def web_served(tmp_path_factory: pytest.TempPathFactory, site: WebSite) -> Iterator[Served]:
    """A server that may reach the site (loopback is refused by default) and its fake model."""
    folder = tmp_path_factory.mktemp("web")
    env = {"CAIRN_FETCH_ALLOW": site.address}
    with FakeModelServer() as fake, cairn_server(sqlite_url(folder), fake, env=env) as server:
        yield Served(server.url, fake)


def fetching(served: Served, url: str) -> None:
    """The model fetches `url`, then answers."""
    served.fake.set_script(script({"tool_calls": [call("fetch_url", url=url)]}, {"text": "Done."}))


def tool_results(served: Served) -> list[str]:
    """What the model was told of its calls, in the last request it got."""
    messages: list[dict[str, Any]] = served.fake.requests[-1].body["messages"]
    return [str(m["content"]) for m in messages if m["role"] == "tool"]


def settled(listener: RecordingListener) -> ToolSettled:
    [event] = listener.of_type("tool_settled")
    assert isinstance(event, ToolSettled)
    return event


def identity(name: str) -> WorkspaceIdentity:
    """A codebase of its own for a raw client."""
    commit = hashlib.sha1(name.encode()).hexdigest()
    return WorkspaceIdentity(root_commit=commit, display_name=name, path=f"/tmp/{name}")


def policy(tmp_path: Path, **rules: list[str]) -> Policy:
    settings = PolicySettings(user_file=tmp_path / "settings.toml", user_file_shown="settings")
    for kind, texts in rules.items():
        setattr(settings, kind, texts)
    return policy_for(settings)


async def test_an_approved_fetch_is_asked_with_its_full_url_then_fetched(
    web_served: Served, site: WebSite, own_repo: Path, tmp_path: Path
) -> None:
    url = f"{site.url}/docs/docs_page.html?q=connect+timeout"
    fetching(web_served, url)
    listener = RecordingListener([Approval("once")])
    session = client_session(web_served.url, own_repo, listener, policy(tmp_path))
    await one_request(session, listener, "what is the default connect timeout?")
    [asked] = listener.asked
    assert asked.preview.title == "Fetch a web page from 127.0.0.1"
    assert url in asked.preview.body  # the query string too: it goes to that host
    options = session.policy.decide(asked).options
    assert options.rule == "fetch_url(domain:127.0.0.1)"  # the narrowest rule: the host
    assert options.session == "pages of 127.0.0.1"
    assert "/docs/docs_page.html" in site.hits
    assert "# Configuring the widget" in tool_results(web_served)[0]
    event = settled(listener)
    assert event.status == "ok" and event.result is not None
    assert event.result.text.startswith(f"{url} (HTTP 200 OK")
    assert listener.handled == []  # its end is the server's tool_settled, not a local result


async def test_a_denied_fetch_is_never_made_and_the_model_reads_the_reason(
    web_served: Served, site: WebSite, own_repo: Path, tmp_path: Path
) -> None:
    fetching(web_served, f"{site.url}/notes.txt?leak=secret-ish")
    before = len(site.hits)
    listener = RecordingListener([Approval("deny", "not that site")])
    session = client_session(web_served.url, own_repo, listener, policy(tmp_path))
    await one_request(session, listener, "read the notes")
    assert len(site.hits) == before  # nothing reached the site
    result = tool_results(web_served)[-1]
    assert "denied this fetch_url call" in result and "Reason: not that site" in result
    event = settled(listener)
    assert (event.status, event.reason) == ("denied", "not that site")


async def test_a_domain_rule_allows_without_asking_and_a_deny_rule_refuses(
    web_served: Served, site: WebSite, own_repo: Path, tmp_path: Path
) -> None:
    fetching(web_served, f"{site.url}/notes.txt")
    allowed = RecordingListener()
    rules = policy(tmp_path, allow=["fetch_url(domain:127.0.0.1)"])
    await one_request(client_session(web_served.url, own_repo, allowed, rules), allowed, "go")
    assert allowed.asked == [] and settled(allowed).status == "ok"
    assert "notes" in tool_results(web_served)[0].lower()

    fetching(web_served, f"{site.url}/notes.txt")
    before = len(site.hits)
    denied = RecordingListener()
    rules = policy(tmp_path, deny=["fetch_url"], allow=["fetch_url(domain:127.0.0.1)"])
    await one_request(client_session(web_served.url, own_repo, denied, rules), denied, "go")
    assert denied.asked == [] and len(site.hits) == before
    assert settled(denied).status == "denied"
    assert "Reason: denied by rule fetch_url in settings" in tool_results(web_served)[-1]


async def test_allow_always_saves_the_domain_rule_and_stops_the_asking(
    web_served: Served, site: WebSite, own_repo: Path, tmp_path: Path
) -> None:
    rules = policy(tmp_path)
    fetching(web_served, f"{site.url}/notes.txt")
    first = RecordingListener([Approval("always")])
    await one_request(client_session(web_served.url, own_repo, first, rules), first, "go")
    assert len(first.asked) == 1 and settled(first).status == "ok"
    assert 'allow = ["fetch_url(domain:127.0.0.1)"]' in (tmp_path / "settings.toml").read_text()
    fetching(web_served, f"{site.url}/docs/blog_post.html")
    second = RecordingListener()
    await one_request(client_session(web_served.url, own_repo, second, rules), second, "go")
    assert second.asked == [] and settled(second).status == "ok"


async def test_headless_without_approval_refuses_with_the_rule_that_would_allow_it(
    web_served: Served, site: WebSite, own_repo: Path, tmp_path: Path
) -> None:
    fetching(web_served, f"{site.url}/notes.txt")
    before = len(site.hits)
    listener = HeadlessListener(as_json=False, out=io.StringIO(), err=io.StringIO())
    session = client_session(web_served.url, own_repo, listener, policy(tmp_path))
    await run_headless(session, listener, "read the notes")
    assert len(site.hits) == before
    result = tool_results(web_served)[-1]
    assert "running headless with nobody to ask" in result
    assert "fetch_url(domain:127.0.0.1)" in result


async def test_a_redirect_to_another_host_is_refused_after_approval_of_the_first(
    web_served: Served, site: WebSite, own_repo: Path, tmp_path: Path
) -> None:
    elsewhere = f"http://localhost:{site.port}/notes.txt"
    fetching(web_served, f"{site.url}/redirect?to={elsewhere}")
    listener = RecordingListener([Approval("once")])
    session = client_session(web_served.url, own_repo, listener, policy(tmp_path))
    await one_request(session, listener, "follow it")
    assert site.hits[-1] == "/redirect"  # the other host was never reached
    result = tool_results(web_served)[-1]
    assert f"redirects to '{elsewhere}', refused: that is another host" in result
    assert "call fetch_url with that URL" in result
    assert settled(listener).status == "error"


async def test_with_its_client_gone_the_fetch_is_refused_not_run(
    web_served: Served, site: WebSite
) -> None:
    web_served.fake.set_script(
        script(
            {"tool_calls": [call("fetch_url", url=f"{site.url}/notes.txt")], "delay_s": 1.0},
            {"text": "Done."},
        )
    )
    before, requests = len(site.hits), len(web_served.fake.requests)
    client, _ = await connected(web_served.url, workspace=identity("gone"))
    await client.send(UserMessage(text="read the notes"))
    await client.close()  # before the model's call comes
    await until(None, lambda: len(web_served.fake.requests) == requests + 2)
    assert len(site.hits) == before
    result = tool_results(web_served)[-1]
    assert "needs the approval of the client that started this run" in result
    assert "not connected" in result


async def test_a_raw_client_answers_an_approval_only_request_without_running_it(
    web_served: Served, site: WebSite
) -> None:
    url = f"{site.url}/notes.txt#part"
    fetching(web_served, url)
    client, _ = await connected(web_served.url, workspace=identity("raw"))
    await client.send(UserMessage(text="read the notes"))
    request = await client.recv_until(ToolRequest)
    assert request.approve_only and request.tool == "fetch_url"
    assert request.arguments == {"url": f"{site.url}/notes.txt", "offset": 0}  # as fetched
    await client.send(ToolResult(call_id=request.call_id, status="ok"))
    ended = await client.recv_until(ToolSettled)
    await client.recv_until(RunFinished)
    await client.close()
    assert ended.call_id == request.model_call_id and ended.status == "ok"


async def test_a_server_killed_while_a_fetch_awaits_approval_records_it_not_run(
    tmp_path: Path, fake_model: FakeModelServer
) -> None:
    """What a killed server left (a running run waiting on a fetch's approval) is ended at the
    next start as not run: nothing was fetched, unlike a client tool that may have run."""
    url = sqlite_url(tmp_path)
    store = Store(await open_database(url))
    user = await store.ensure_user("local")
    agent = await store.get_or_create_agent(user.id, identity("killed"))
    conversation = await store.create_conversation(agent.id)
    run = await store.create_run(conversation.id, "openai/gpt-5.4-mini")
    fetch = ToolCall("call_1", "fetch_url", '{"url": "https://example.com/"}')
    await store.add_message(conversation.id, run.id, ModelMessage("assistant", "", (fetch,)))
    asked = await store.create_tool_call(conversation.id, run.id, "call_1", "fetch_url", {})
    shell = await store.create_tool_call(conversation.id, run.id, "call_2", "shell", {})

    with cairn_server(url, fake_model):  # starts by ending what the killed one left
        pass
    fetched, ran = await store.get_tool_call(asked.id), await store.get_tool_call(shell.id)
    assert fetched is not None and ran is not None
    assert (fetched.status, fetched.reason) == (
        "denied",
        "nobody approved it, so the server did not run it (the server restarted)",
    )
    assert ran.status == "unknown"  # a client tool may have run


@pytest.mark.parametrize(
    "rule", ["fetch_url(example.com)", "fetch_url(domain:a b)", "fetch_url(domain:a..b)"]
)
def test_a_fetch_rule_names_a_domain_or_is_refused_in_one_line(rule: str) -> None:
    with pytest.raises(SettingsError, match=r"names a host as fetch_url\(domain:example\.com\)"):
        parse_rule(rule, "settings.toml")


def test_a_domain_rule_covers_the_host_and_its_subdomains_only(tmp_path: Path) -> None:
    rules = policy(tmp_path, allow=["fetch_url(domain:Example.COM.)"])
    decided = {}
    for url in (
        "https://example.com/a",
        "https://docs.example.com/b?c=d",
        "https://notexample.com/",
        "https://example.com.evil.net/",
    ):
        request = ToolRequest(
            run_id="r", call_id="c", tool="fetch_url", arguments={"url": url}, approve_only=True
        )
        decided[url] = rules.decide(prepare_call(tmp_path, request)).decision
    assert decided == {
        "https://example.com/a": "allow",
        "https://docs.example.com/b?c=d": "allow",
        "https://notexample.com/": "ask",
        "https://example.com.evil.net/": "ask",
    }


# --------------------------------------------------------------------------- the TUI

PAGE = "https://docs.python.org/3/library/asyncio-task.html?highlight=timeout"


def fetch_request() -> ToolRequest:
    """The server's request to approve the model's fetch_url call `m1`, to this client."""
    return ToolRequest(
        seq=5,
        run_id="run-1",
        call_id="call-f",
        tool="fetch_url",
        arguments={"url": PAGE, "offset": 0},
        executor=THIS_CLIENT,
        model_call_id="m1",
        approve_only=True,
    )


async def test_the_approval_screen_shows_the_whole_url_and_offers_the_domain_rule(
    tmp_path: Path,
) -> None:
    rules = policy(tmp_path)
    async with scripted_run(policy=rules) as (app, session, pilot):
        session.events(
            RunStarted(seq=3, run_id="run-1", user_text="how do timeouts work?"),
            AssistantMessage(
                seq=4,
                run_id="run-1",
                text="",
                tool_calls=[
                    HistoryToolCall(call_id="m1", tool="fetch_url", arguments={"url": PAGE})
                ],
            ),
            fetch_request(),
        )
        answer = await asked(pilot, session, prepare_call(tmp_path, fetch_request()))
        screen = app.screen
        assert isinstance(screen, ApprovalScreen)
        shown = rendered_text(screen.query_one("#approval-body", Static))
        assert PAGE in "".join(shown.split())  # whole, though wrapped on the screen
        hint = screen.query_one("#approval-hint", Label)
        assert 'allow = ["fetch_url(domain:docs.python.org)"]' in rendered_text(hint)
        await pilot.press("y")
        assert (await answer).kind == "once"
        session.events(ToolSettled(seq=6, run_id="run-1", call_id="m1", status="ok", reason=None))
        await settle(pilot)
        [entry] = tool_entries(app)  # one line for the call: asked, then ended by the server
        assert entry.status == "ok"
        assert chat_entries(app)[-1].startswith("✓ fetch_url https://docs.python.org/3/")


async def test_a_fetch_nobody_answers_for_is_refused_as_not_approved(
    site: WebSite, tmp_path: Path, fake_model: FakeModelServer
) -> None:
    fake_model.set_script(
        script({"tool_calls": [call("fetch_url", url=f"{site.url}/notes.txt")]}, {"text": "Ok."})
    )
    before = len(site.hits)
    env = {"CAIRN_FETCH_ALLOW": site.address}
    with cairn_server(
        sqlite_url(tmp_path), fake_model, env=env, approval_timeout_s=1.0, withdraw_grace_s=0.2
    ) as server:
        client, _ = await connected(server.url, workspace=identity("silent"))
        await client.send(UserMessage(text="read the notes"))
        request = await client.recv_until(ToolRequest)  # and never answered
        ended = await client.recv_until(ToolSettled)
        await client.recv_until(RunFinished)
        await client.close()
    assert len(site.hits) == before
    assert ended.call_id == request.model_call_id and ended.status == "denied"
    assert ended.reason is not None and ended.reason.startswith("nobody approved it")
    messages = fake_model.requests[-1].body["messages"]
    [result] = [m["content"] for m in messages if m["role"] == "tool"]
    assert "Reason: nobody approved it, so the server did not run it" in result
