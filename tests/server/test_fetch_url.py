"""fetch_url against a real web site on loopback: Markdown, refusals, limits, redirects, cache.

Loopback is refused by default, so each test allows only the site's own host:port (and
proves the default refuses it); the address checks themselves are tested on many forms.
"""

from __future__ import annotations

import ipaddress
import json
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any, cast

import pytest
from cairn_fakes.runner import FakeModelServer
from cairn_protocol import RunFinished, ToolRequest, ToolResult, ToolSettled, UserMessage
from cairn_server.config import FetchSettings, fetch_allowance
from cairn_server.domain import ToolCall
from cairn_server.memory.services import Memory
from cairn_server.tools.base import ToolContext, ToolOutcome
from cairn_server.tools.fetch_url import SHOWN_CHARS
from cairn_server.tools.registry import TOOLS
from cairn_server.tools.web_addresses import FetchRefused, address_problem, checked_url
from cairn_server.tools.web_pages import WebPages, text_kind
from support.servers import cairn_server, call, script, sqlite_url
from support.web_site import WebSite
from support.wire import connected


@pytest.fixture(scope="module")
def site() -> Iterator[WebSite]:
    with WebSite() as served:
        yield served


def allowing(site: WebSite, **fields: Any) -> FetchSettings:
    """Settings that let fetch_url reach the site's host:port and nothing else private."""
    return FetchSettings(allow=(fetch_allowance(site.address),), **fields)


async def fetch(web: WebPages, **arguments: Any) -> ToolOutcome:
    """A fetch_url call as the model makes it, through the server's one tool registry."""
    ctx = ToolContext(cast(Memory, None), "agent", "conversation", web=web)
    return await TOOLS.dispatch(ctx, ToolCall("call_1", "fetch_url", json.dumps(arguments)))


# --------------------------------------------------------------------------- pages


async def test_an_html_page_reads_as_markdown_without_its_navigation_or_scripts(
    site: WebSite,
) -> None:
    outcome = await fetch(WebPages(allowing(site)), url=f"{site.url}/docs/docs_page.html")
    assert not outcome.is_error, outcome.content
    heading, _, text = outcome.content.partition("\n\n")
    assert heading.startswith(f"{site.url}/docs/docs_page.html (HTTP 200 OK, text/html,")
    assert "# Configuring the widget" in text and "## Timeouts" in text
    assert "```" in text and "connect_timeout = 5" in text  # the code block kept as code
    assert f"[reference]({site.url}/docs/reference.html)" in text  # links made absolute
    assert "| read\\_timeout | 60 |" in text.replace(" | seconds per read", "")
    for boilerplate in ("analytics", "font-family", "Subscribe to our newsletter", "Download"):
        assert boilerplate not in text


async def test_an_api_reference_keeps_its_parameter_table_and_example(site: WebSite) -> None:
    """Sphinx puts a function's whole text in a <dd>: it must not come out as one line."""
    outcome = await fetch(WebPages(allowing(site)), url=f"{site.url}/docs/api_reference.html")
    text = outcome.content.partition("\n\n")[2]
    assert text.startswith("# scan()\n")  # no "¶" anchor
    assert "| `max_size` | `int` | Skip files larger than this many bytes" in text
    assert '```\nfrom scanlib import scan\nresult = scan("src", include=["*.py"])\n' in text
    assert "Navigation" not in text and "Powered by Sphinx" not in text


async def test_a_blog_post_comes_without_its_site_around_it(site: WebSite) -> None:
    outcome = await fetch(WebPages(allowing(site)), url=f"{site.url}/docs/blog_post.html")
    text = outcome.content.partition("\n\n")[2]
    assert text.startswith("# How we cut our build time by 70%")
    assert "## Splitting the suite" in text and "key: deps-${{ hashFiles('uv.lock') }}" in text
    for chrome in ("cookies", "Related post", "Great post", "Subscribe", "gtm.js", "Careers"):
        assert chrome not in text


async def test_plain_text_comes_as_it_is(site: WebSite) -> None:
    outcome = await fetch(WebPages(allowing(site)), url=f"{site.url}/notes.txt")
    assert outcome.content.endswith("\n\nline one\nline two\n")


async def test_an_error_status_is_an_error_with_the_page(site: WebSite) -> None:
    outcome = await fetch(WebPages(allowing(site)), url=f"{site.url}/docs/missing.html")
    assert outcome.is_error
    assert outcome.content.startswith("Error: the server answered HTTP 404 Not Found\n")
    assert "No such page." in outcome.content


# --------------------------------------------------------------------------- where it may go


async def test_by_default_the_loopback_site_is_refused_and_never_reached(site: WebSite) -> None:
    before = len(site.hits)
    for url in (
        f"{site.url}/docs/docs_page.html",
        f"http://localhost:{site.port}/docs/docs_page.html",
        f"http://2130706433:{site.port}/docs/docs_page.html",  # 127.0.0.1 as one number
        f"http://0x7f.1:{site.port}/docs/docs_page.html",  # and in hex, shortened
        f"http://[::ffff:127.0.0.1]:{site.port}/docs/docs_page.html",
    ):
        outcome = await fetch(WebPages(FetchSettings()), url=url)
        assert outcome.is_error and "a loopback address" in outcome.content, url
        assert "CAIRN_FETCH_ALLOW" in outcome.content
    assert len(site.hits) == before


async def test_an_allowance_for_one_port_does_not_open_the_others(site: WebSite) -> None:
    other_port = site.port + 1 if site.port < 65535 else site.port - 1
    outcome = await fetch(WebPages(allowing(site)), url=f"http://127.0.0.1:{other_port}/")
    assert outcome.is_error and "a loopback address" in outcome.content
    everything = FetchSettings.from_env({"CAIRN_FETCH_ALLOW_PRIVATE": "1"})
    allowed = await fetch(WebPages(everything), url=f"{site.url}/notes.txt")
    assert not allowed.is_error


@pytest.mark.parametrize(
    "target",
    [
        "http://10.0.0.7/admin",
        "http://169.254.169.254/latest/meta-data/",  # a cloud's metadata service
        "http://127.0.0.1:{other}/",
        "http://[::1]:{port}/docs/docs_page.html",
        "http://0.0.0.0:{port}/docs/docs_page.html",
    ],
)
async def test_a_redirect_into_a_private_address_is_refused_though_the_first_hop_is_allowed(
    site: WebSite, target: str
) -> None:
    to = target.format(port=site.port, other=site.port + 1)
    outcome = await fetch(WebPages(allowing(site)), url=f"{site.url}/redirect?to={to}")
    assert outcome.is_error
    assert f"redirects to '{to}', refused:" in outcome.content
    assert site.hits[-1] == "/redirect"  # the hop was made, the target never reached


async def test_an_allowed_redirect_is_followed_and_named(site: WebSite) -> None:
    page = f"{site.url}/notes.txt"
    outcome = await fetch(WebPages(allowing(site)), url=f"{site.url}/redirect?to=/notes.txt")
    assert outcome.content.startswith(f"{page} (HTTP 200 OK")
    assert f"[redirected from {site.url}/redirect?to=/notes.txt]" in outcome.content


async def test_a_redirect_loop_and_a_long_chain_end_in_one_line(site: WebSite) -> None:
    loop = await fetch(WebPages(allowing(site)), url=f"{site.url}/loop/a")
    assert loop.is_error and "redirects in a loop" in loop.content
    hop = f"{site.url}/redirect?to=/notes.txt"
    for _ in range(3):
        hop = f"{site.url}/redirect?to={hop.replace('?', '%3F').replace('=', '%3D')}"
    chain = await fetch(WebPages(allowing(site, max_redirects=2)), url=hop)
    assert chain.is_error and "redirects more than 2 times" in chain.content


# --------------------------------------------------------------------------- limits


async def test_a_slow_endless_page_is_cut_by_the_time_limit(site: WebSite) -> None:
    started = time.monotonic()
    outcome = await fetch(WebPages(allowing(site, timeout_s=1.0)), url=f"{site.url}/slow")
    assert time.monotonic() - started < 5
    assert outcome.is_error and "was not read within 1 s (CAIRN_FETCH_TIMEOUT_S)" in outcome.content


async def test_a_10_mb_page_is_cut_at_the_size_limit_and_says_so(site: WebSite) -> None:
    web = WebPages(allowing(site, max_bytes=500_000))
    outcome = await fetch(web, url=f"{site.url}/huge")
    assert not outcome.is_error
    assert "500,000 bytes)" in outcome.content.splitlines()[0]
    assert "reading stopped at the size limit of 500,000 bytes" in outcome.content
    assert "All work and no play" in outcome.content


@pytest.mark.parametrize(
    ("path", "said"), [("/image.png", "is image/png, not text"), ("/untyped", "binary data")]
)
async def test_a_binary_file_is_refused(site: WebSite, path: str, said: str) -> None:
    outcome = await fetch(WebPages(allowing(site)), url=f"{site.url}{path}")
    assert outcome.is_error and said in outcome.content
    assert "reads web pages and text" in outcome.content


async def test_a_long_page_is_read_in_parts_with_offset(site: WebSite) -> None:
    web = WebPages(allowing(site, max_bytes=500_000))
    before = site.hits.count("/huge")
    first = await fetch(web, url=f"{site.url}/huge")
    assert f"call fetch_url with offset={SHOWN_CHARS} to read on" in first.content
    second = await fetch(web, url=f"{site.url}/huge", offset=SHOWN_CHARS)
    assert f"[characters {SHOWN_CHARS:,}–{2 * SHOWN_CHARS:,} of" in second.content
    assert site.hits.count("/huge") == before + 1  # the second part came from the cache


# --------------------------------------------------------------------------- cache


async def test_the_same_url_within_the_ttl_is_fetched_once(site: WebSite) -> None:
    now = [1000.0]
    web = WebPages(allowing(site, cache_ttl_s=60), clock=lambda: now[0])
    url = f"{site.url}/docs/docs_page.html"
    before = site.hits.count("/docs/docs_page.html")
    first = await fetch(web, url=url)
    now[0] += 30
    second = await fetch(web, url=url + "#timeouts")  # the fragment is not part of the page
    assert site.hits.count("/docs/docs_page.html") == before + 1
    assert "[from the cache: fetched 30 s ago]" in second.content
    assert second.content.split("\n\n", 1)[1] == first.content.split("\n\n", 1)[1]
    now[0] += 31
    await fetch(web, url=url)
    assert site.hits.count("/docs/docs_page.html") == before + 2


async def test_a_ttl_of_zero_keeps_nothing(site: WebSite) -> None:
    web = WebPages(allowing(site, cache_ttl_s=0))
    before = site.hits.count("/notes.txt")
    for _ in range(2):
        await fetch(web, url=f"{site.url}/notes.txt")
    assert site.hits.count("/notes.txt") == before + 2


# --------------------------------------------------------------------------- hostile arguments


@pytest.mark.parametrize(
    ("arguments", "said"),
    [
        ({}, "invalid arguments for fetch_url: url"),
        ({"url": None}, "invalid arguments for fetch_url: url"),
        ({"url": 42}, "invalid arguments for fetch_url: url"),
        ({"url": "  "}, "url is empty"),
        ({"url": "file:///etc/passwd"}, "not file: URLs"),
        ({"url": "gopher://example.com/1"}, "not gopher: URLs"),
        ({"url": "data:text/html,<h1>hi</h1>"}, "not data: URLs"),
        ({"url": "javascript:alert(1)"}, "not javascript: URLs"),
        ({"url": "ftp://example.com/x"}, "not ftp: URLs"),
        ({"url": "example.com/page"}, "has no scheme; write it as https://example.com/page"),
        ({"url": "http://user:secret@example.com/"}, "user name or password are refused"),
        ({"url": "http://example.com\\@10.0.0.1/"}, "backslashes"),
        ({"url": "http://exa mple.com/"}, "spaces"),
        ({"url": "http://example.com/\r\nHost: evil"}, "control characters"),
        ({"url": "https://" + "a" * 5000 + ".com/"}, "at most 2,048"),
        ({"url": "http://ｌｏｃａｌｈｏｓｔ/"}, "is not a valid URL: Invalid IDNA hostname"),
        ({"url": "http://example.com:99999/"}, "ports go from 1 to 65535"),
        ({"url": "http:///path"}, "has no host"),
        ({"url": "http://[::1/"}, "is not a valid URL"),
        ({"url": "https://example.com/", "offset": -3}, "offset must be 0 or more"),
        ({"url": "https://example.com/", "extra": 1}, "invalid arguments for fetch_url"),
    ],
)
async def test_hostile_arguments_get_one_clear_error(arguments: dict[str, Any], said: str) -> None:
    outcome = await fetch(WebPages(FetchSettings()), **arguments)
    assert outcome.is_error and said in outcome.content, outcome.content
    assert len(outcome.content) < 400 and "Traceback" not in outcome.content


async def test_a_host_that_does_not_resolve_is_one_line() -> None:
    outcome = await fetch(WebPages(FetchSettings()), url="http://no-such-host.invalid/")
    assert outcome.is_error and "cannot resolve the host 'no-such-host.invalid'" in outcome.content


# --------------------------------------------------------------------------- address checks


@pytest.mark.parametrize(
    ("address", "kind"),
    [
        ("127.0.0.1", "a loopback address"),
        ("127.255.0.9", "a loopback address"),
        ("0.0.0.0", "an unspecified address"),
        ("10.1.2.3", "a private address"),
        ("172.16.0.1", "a private address"),
        ("192.168.1.1", "a private address"),
        ("169.254.169.254", "a link-local address"),
        ("224.0.0.1", "a multicast address"),
        ("239.255.255.250", "a multicast address"),
        ("100.64.0.1", "a non-public address"),  # carrier-grade NAT
        ("192.0.2.1", "a private address"),  # documentation
        ("::1", "a loopback address"),
        ("::", "an unspecified address"),
        ("fe80::1", "a link-local address"),
        ("fd12:3456::1", "a private address"),
        ("ff02::1", "a multicast address"),
        ("2001:db8::1", "a private address"),
        ("::127.0.0.1", "a reserved address"),  # IPv4-compatible, deprecated
        ("2002:7f00:1::", "a loopback IPv4 address (127.0.0.1) inside an IPv6 address"),  # 6to4
        ("2002:a00:1::", "a private IPv4 address (10.0.0.1) inside an IPv6 address"),
        ("64:ff9b::a9fe:a9fe", "a link-local IPv4 address (169.254.169.254) inside an IPv6"),
    ],
)
def test_non_public_addresses_are_named(address: str, kind: str) -> None:
    problem = address_problem(ipaddress.ip_address(address))
    assert problem is not None and problem.startswith(kind)


@pytest.mark.parametrize(
    "address", ["8.8.8.8", "1.1.1.1", "93.184.215.14", "2606:4700:4700::1111", "2002:808:808::"]
)
def test_public_addresses_pass(address: str) -> None:
    assert address_problem(ipaddress.ip_address(address)) is None


@pytest.mark.parametrize(
    "url",
    [
        "http://0177.0.0.1/",  # octal: refused by the parser
        "http://[::1/",
        "mailto:someone@example.com",
        "//example.com/",
    ],
)
def test_urls_that_are_not_fetchable_are_refused_before_any_lookup(url: str) -> None:
    with pytest.raises(FetchRefused):
        checked_url(url)


@pytest.mark.parametrize(
    ("media_type", "kind"),
    [
        ("text/html", "html"),
        ("application/xhtml+xml", "html"),
        ("text/plain", "text"),
        ("text/markdown", "text"),
        ("application/json", "text"),
        ("application/problem+json", "text"),
        ("application/atom+xml", "text"),
        ("application/javascript", "text"),
        ("image/png", None),
        ("application/pdf", None),
        ("application/octet-stream", None),
        ("application/zip", None),
        ("video/mp4", None),
    ],
)
def test_text_types_are_read_and_others_refused(media_type: str, kind: str | None) -> None:
    assert text_kind(media_type) == kind


def test_a_url_keeps_its_query_and_loses_its_fragment() -> None:
    assert str(checked_url(" HTTPS://Example.COM/a?b=1#c ")) == "https://example.com/a?b=1"
    assert str(checked_url("http://пример.рф/")) == "http://xn--e1afmkfd.xn--p1ai/"


# --------------------------------------------------------------------------- through a run


async def test_an_approved_fetch_url_call_runs_on_the_server_and_reads_the_same_after_restart(
    site: WebSite, tmp_path: Path, fake_model: FakeModelServer
) -> None:
    page = f"{site.url}/docs/docs_page.html"
    fake_model.set_script(
        script(
            {"tool_calls": [call("fetch_url", url=page), call("fetch_url", url="file:///etc/x")]},
            {"text": "The connect timeout defaults to 10 seconds."},
        )
    )
    env = {"CAIRN_FETCH_ALLOW": site.address}
    with cairn_server(sqlite_url(tmp_path), fake_model, env=env) as server:
        client, _ = await connected(server.url)
        await client.send(UserMessage(text="what is the widget's default connect timeout?"))
        asked = await client.recv_until(ToolRequest)  # its client approves, the server fetches
        assert asked.approve_only and asked.arguments == {"url": page, "offset": 0}
        await client.send(ToolResult(call_id=asked.call_id, status="ok"))
        fetched = await client.recv_until(ToolSettled)
        refused = await client.recv_until(ToolSettled)
        await client.recv_until(RunFinished)
        await client.close()
    assert fetched.status == "ok" and fetched.result is not None
    assert fetched.result.summary.startswith(f"{page} (HTTP 200 OK, text/html")
    assert refused.status == "error" and refused.reason is not None
    assert "only http and https URLs" in refused.reason
    results = [m for m in fake_model.requests[-1].body["messages"] if m["role"] == "tool"]
    assert "# Configuring the widget" in results[0]["content"]
    assert "| connect\\_timeout | 10 | seconds to connect |" in results[0]["content"]
    assert results[1]["content"].startswith("Error: only http and https URLs can be fetched")
    with cairn_server(sqlite_url(tmp_path), fake_model, env=env) as server:
        _, welcome = await connected(server.url)
    calls = [c for item in welcome.history for c in getattr(item, "tool_calls", None) or []]
    assert [(c.tool, c.status) for c in calls] == [("fetch_url", "ok"), ("fetch_url", "error")]
    assert calls[0].result == fetched.result and calls[1].reason == refused.reason
