"""`cairn ticket SOURCE` sources: files, stdin, GitHub and Linear issues, and pull requests.

GitHub and Linear are fake servers on loopback speaking the real APIs' shapes, errors included.
"""

from __future__ import annotations

import io
import re
import socket
import time
from collections.abc import Callable, Iterator
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest
from cairn_client.config import TicketSettings
from cairn_client.ticket.github import create_pull_request, github_api_url, parse_github_remote
from cairn_client.ticket.sources import Ticket, TicketError, load_ticket, slugify
from cairn_server.api.background import bind_listening
from support.ticket_apis import GITHUB_TEST_TOKEN, LINEAR_TEST_KEY, FakeGitHub, FakeLinear

tickets = TicketSettings.from_env  # the ticket settings the CLI reads from these variables


@pytest.fixture(scope="module")
def github_server() -> Iterator[FakeGitHub]:
    with FakeGitHub() as fake:
        yield fake


@pytest.fixture(scope="module")
def linear_server() -> Iterator[FakeLinear]:
    with FakeLinear() as fake:
        yield fake


@pytest.fixture
def github(github_server: FakeGitHub) -> FakeGitHub:
    github_server.reset()
    return github_server


@pytest.fixture
def linear(linear_server: FakeLinear) -> FakeLinear:
    linear_server.reset()
    return linear_server


@pytest.fixture
def github_env(github: FakeGitHub) -> dict[str, str]:
    return {"GITHUB_TOKEN": GITHUB_TEST_TOKEN, "CAIRN_GITHUB_API_URL": github.api_url}


@pytest.fixture
def linear_env(linear: FakeLinear) -> dict[str, str]:
    return {"LINEAR_API_KEY": LINEAR_TEST_KEY, "CAIRN_LINEAR_API_URL": linear.api_url}


def error_of(load: Callable[[], Any]) -> str:
    """The TicketError `load` raises, checked to be one line."""
    with pytest.raises(TicketError) as caught:
        load()
    message = str(caught.value)
    assert message and "\n" not in message
    return message


def ticket_from(source: str, env: dict[str, str], **where: Any) -> Ticket:
    """`load_ticket(source)` with the ticket settings the CLI reads from the variables `env`."""
    return load_ticket(source, settings=tickets(env), **where)


def refusal_of(source: str, env: dict[str, str], **where: Any) -> str:
    """The one-line TicketError that loading `source` raises."""
    return error_of(lambda: ticket_from(source, env, **where))


def pull_request(env: dict[str, str], repo: str, *, head: str, title: str, body: str) -> str:
    """`create_pull_request` into main with the ticket settings read from the variables `env`."""
    return create_pull_request(
        repo, head=head, base="main", title=title, body=body, settings=tickets(env)
    )


def pull_refusal(env: dict[str, str], repo: str, *, head: str, title: str, body: str) -> str:
    """The one-line TicketError that opening the pull request raises."""
    return error_of(lambda: pull_request(env, repo, head=head, title=title, body=body))


def closed_port_url() -> str:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    return f"http://127.0.0.1:{port}"


# --------------------------------------------------------------------------- files and stdin


def test_a_file_ticket_takes_its_heading_as_title(tmp_path: Path) -> None:
    (tmp_path / "login.md").write_text("# Fix the login redirect\n\nSafari loops.\n\n- step 1\n")

    ticket = ticket_from("login.md", {}, cwd=tmp_path)

    assert ticket == Ticket(
        "file",
        "login.md",
        "Fix the login redirect",
        "Safari loops.\n\n- step 1",
        None,
        "fix-the-login-redirect",
    )
    assert (
        ticket.as_prompt() == "Ticket login.md: Fix the login redirect\n\nSafari loops.\n\n- step 1"
    )


def test_a_file_without_heading_takes_its_first_line_as_title(tmp_path: Path) -> None:
    (tmp_path / "tickets").mkdir()
    (tmp_path / "tickets" / "flaky.txt").write_text("\n\nThe flaky test\r\nIt fails on CI.\r\n")

    ticket = ticket_from("tickets/flaky.txt", {}, cwd=tmp_path)

    assert (ticket.title, ticket.body, ticket.branch_slug) == (
        "The flaky test",
        "It fails on CI.",
        "the-flaky-test",
    )


def test_a_title_without_latin_letters_takes_the_slug_of_the_file_name(tmp_path: Path) -> None:
    (tmp_path / "Bug 7.md").write_text("## 修复登录 ##\n")

    ticket = ticket_from(str(tmp_path / "Bug 7.md"), {})

    assert (ticket.title, ticket.body, ticket.branch_slug) == ("修复登录", "", "bug-7")


def test_an_empty_file_is_refused(tmp_path: Path) -> None:
    (tmp_path / "empty.md").write_text("  \n\n")

    assert "empty.md is empty" in refusal_of("empty.md", {}, cwd=tmp_path)


@pytest.mark.parametrize("source", ["missing.md", "tickets/login", "./nope"])
def test_a_missing_file_is_refused(tmp_path: Path, source: str) -> None:
    message = refusal_of(source, {}, cwd=tmp_path)

    assert message.startswith(f"no file {source} in {tmp_path}")


def test_a_folder_is_refused(tmp_path: Path) -> None:
    (tmp_path / "docs").mkdir()

    assert "is not a file" in refusal_of("docs", {}, cwd=tmp_path)


def test_an_existing_file_wins_over_a_key(tmp_path: Path, linear: FakeLinear) -> None:
    (tmp_path / "ENG-42").write_text("Local notes\n")

    ticket = ticket_from("ENG-42", {"CAIRN_LINEAR_API_URL": linear.api_url}, cwd=tmp_path)

    assert (ticket.source, ticket.title) == ("file", "Local notes")
    assert linear.requests == []


def test_stdin_ticket() -> None:
    ticket = ticket_from(
        "-", {}, stdin=io.StringIO("Add dark mode\n=============\n\nFor the TUI.\n")
    )

    assert ticket == Ticket(
        "stdin", "stdin", "Add dark mode", "For the TUI.", None, "add-dark-mode"
    )


def test_empty_stdin_is_refused() -> None:
    assert "stdin was empty" in refusal_of("-", {}, stdin=io.StringIO(""))


@pytest.mark.parametrize(
    "source",
    [
        "nonsense words",
        "owner/repo",
        "eng-42",
        "https://example.com/owner",
        "https://linear.app/acme/project/cairn",
        "",
    ],
)
def test_an_unknown_source_form_is_refused(tmp_path: Path, source: str) -> None:
    message = refusal_of(source, {}, cwd=tmp_path)

    assert "owner/repo#123" in message or "issue URL" in message


# --------------------------------------------------------------------------- branch slugs


@pytest.mark.parametrize(
    ("title", "slug"),
    [
        ("Fix the login redirect", "fix-the-login-redirect"),
        ("  --Café: déjà vu!!-- ", "cafe-deja-vu"),
        ("API v2 / OAuth2 (PKCE) support", "api-v2-oauth2-pkce-support"),
        (
            "Make the very long ticket titles fit into a branch name nicely",
            "make-the-very-long-ticket-titles-fit",
        ),
        ("x" * 50, "x" * 40),
        ("日本語", ""),
    ],
)
def test_slugs_are_short_lowercase_and_branch_safe(title: str, slug: str) -> None:
    assert slugify(title) == slug
    assert len(slug) <= 40 and re.fullmatch(r"(?:[a-z0-9]+(?:-[a-z0-9]+)*)?", slug)


# --------------------------------------------------------------------------- GitHub


def test_github_issue_by_short_form(github: FakeGitHub, github_env: dict[str, str]) -> None:
    github.add_issue(
        "acme/shop", 123, "Checkout fails\r\n", "Steps:\r\n1. pay\r\n", labels=("bug",)
    )

    ticket = ticket_from("acme/shop#123", github_env)

    assert ticket == Ticket(
        "github",
        "acme/shop#123",
        "Checkout fails",
        "Steps:\n1. pay",
        "https://github.com/acme/shop/issues/123",
        "123",
        "acme/shop",
    )
    assert ticket.as_prompt() == (
        "Ticket acme/shop#123: Checkout fails\n\nSteps:\n1. pay\n\nhttps://github.com/acme/shop/issues/123"
    )
    [request] = github.requests
    assert (request.method, request.path) == ("GET", "/repos/acme/shop/issues/123")
    assert request.headers["authorization"] == f"Bearer {GITHUB_TEST_TOKEN}"
    assert request.headers["accept"] == "application/vnd.github+json"
    assert request.headers["x-github-api-version"] == "2022-11-28"


def test_github_issue_by_url_with_a_null_body(
    github: FakeGitHub, github_env: dict[str, str]
) -> None:
    github.add_issue("acme/shop", 7, "Rename the cart", None)

    ticket = ticket_from("https://github.com/acme/shop/issues/7#issuecomment-1", github_env)

    assert (ticket.key, ticket.title, ticket.body, ticket.branch_slug) == (
        "acme/shop#7",
        "Rename the cart",
        "",
        "7",
    )
    assert (
        ticket.as_prompt()
        == "Ticket acme/shop#7: Rename the cart\n\nhttps://github.com/acme/shop/issues/7"
    )


def test_a_pull_request_number_reads_as_a_ticket(
    github: FakeGitHub, github_env: dict[str, str]
) -> None:
    github.add_issue("acme/shop", 8, "Half-done refactor", "Finish it.", pull_request=True)

    ticket = ticket_from("https://github.com/acme/shop/pull/8", github_env)

    assert (ticket.body, ticket.url) == ("Finish it.", "https://github.com/acme/shop/pull/8")


def test_github_enterprise_url_uses_the_api_url_setting(
    github: FakeGitHub, github_env: dict[str, str]
) -> None:
    github.add_issue("tools/cli", 5, "Support proxies", "Corporate proxy.")

    ticket = ticket_from("https://ghe.example.com/tools/cli/issues/5", github_env)

    assert (ticket.key, ticket.github_repo) == ("tools/cli#5", "tools/cli")
    assert github.requests[0].path == "/repos/tools/cli/issues/5"


def test_github_enterprise_url_finds_its_api_under_api_v3() -> None:
    with FakeGitHub(prefix="/api/v3") as ghe:
        site = ghe.url
        ghe.web_url = site
        ghe.add_issue("tools/cli", 5, "Support proxies", "Corporate proxy.")

        ticket = ticket_from(f"{site}/tools/cli/issues/5", {"GITHUB_TOKEN": GITHUB_TEST_TOKEN})

        assert ticket.url == f"{site}/tools/cli/issues/5"
        assert ghe.requests[0].path == "/api/v3/repos/tools/cli/issues/5"


def test_github_api_url_defaults() -> None:
    assert github_api_url(tickets({})) == "https://api.github.com"
    assert github_api_url(tickets({}), "https://github.com") == "https://api.github.com"
    assert github_api_url(tickets({}), "ghe.example.com") == "https://ghe.example.com/api/v3"
    override = {"CAIRN_GITHUB_API_URL": "http://127.0.0.1:9/"}
    assert github_api_url(tickets(override), "ghe.example.com") == "http://127.0.0.1:9"


def test_github_without_token_is_refused(github: FakeGitHub) -> None:
    message = refusal_of("acme/shop#1", {"CAIRN_GITHUB_API_URL": github.api_url})

    assert message.startswith("GITHUB_TOKEN is not set: set it to a GitHub token with read access")
    assert github.requests == []


def test_github_bad_token(github: FakeGitHub, github_env: dict[str, str]) -> None:
    github.add_issue("acme/shop", 1, "Anything")

    message = refusal_of("acme/shop#1", {**github_env, "GITHUB_TOKEN": "ghp_wrong"})

    assert message.startswith("GitHub rejected GITHUB_TOKEN (Bad credentials)")


def test_github_missing_issue(github: FakeGitHub, github_env: dict[str, str]) -> None:
    github.add_issue("acme/shop", 1, "Anything")

    message = refusal_of("acme/shop#99", github_env)

    assert message.startswith(
        "GitHub has no issue acme/shop#99, or GITHUB_TOKEN cannot see acme/shop"
    )


def test_github_deleted_issue(github: FakeGitHub, github_env: dict[str, str]) -> None:
    github.add_issue("acme/shop", 3, "Spam")
    github.delete_issue("acme/shop", 3)

    message = refusal_of("acme/shop#3", github_env)

    assert message.startswith("GitHub says issue acme/shop#3 is gone (This issue was deleted)")


def test_github_rate_limit_says_when_it_resets(
    github: FakeGitHub, github_env: dict[str, str]
) -> None:
    github.add_issue("acme/shop", 1, "Anything")
    github.rate_limited = True
    github.rate_limit_reset = int(time.time()) + 1800

    message = refusal_of("acme/shop#1", github_env)

    reset = datetime.fromtimestamp(github.rate_limit_reset, tz=UTC)
    assert message.startswith(
        f"GitHub's API rate limit is used up: it resets at {reset:%H:%M} UTC (in 30 min)"
    )


def test_github_issue_without_title_or_body(github: FakeGitHub, github_env: dict[str, str]) -> None:
    github.add_issue("acme/shop", 4, "  ", None)

    assert "has no title and no text" in refusal_of("acme/shop#4", github_env)


def test_github_unreachable_names_the_url_and_the_setting() -> None:
    api_url = closed_port_url()
    env = {"GITHUB_TOKEN": GITHUB_TEST_TOKEN, "CAIRN_GITHUB_API_URL": api_url}

    message = refusal_of("acme/shop#1", env)

    assert message.startswith(f"cannot reach GitHub at {api_url}/repos/acme/shop/issues/1")
    assert message.endswith("check your network, or set CAIRN_GITHUB_API_URL to the right API URL")


def test_github_silent_server_times_out() -> None:
    with bind_listening() as silent:  # accepts connections, never answers
        api_url = f"http://127.0.0.1:{silent.getsockname()[1]}"
        env = {"GITHUB_TOKEN": GITHUB_TEST_TOKEN, "CAIRN_GITHUB_API_URL": api_url}

        message = refusal_of("acme/shop#1", env, timeout_s=0.2)

    assert message.startswith(
        f"GitHub did not answer within 0.2 s at {api_url}/repos/acme/shop/issues/1"
    )


# --------------------------------------------------------------------------- Linear


def test_linear_issue_by_key(linear: FakeLinear, linear_env: dict[str, str]) -> None:
    linear.add_issue("ENG-42", "Cache the search index", "Rebuilds take *minutes*.")

    ticket = ticket_from("ENG-42", linear_env)

    assert ticket == Ticket(
        "linear",
        "ENG-42",
        "Cache the search index",
        "Rebuilds take *minutes*.",
        "https://linear.app/acme/issue/ENG-42/cache-the-search-index",
        "eng-42",
    )
    [request] = linear.requests
    assert request.headers["authorization"] == LINEAR_TEST_KEY
    assert request.json["variables"] == {"id": "ENG-42"}
    assert "issue(id: $id)" in request.json["query"]


def test_linear_issue_by_url_with_a_null_description(
    linear: FakeLinear, linear_env: dict[str, str]
) -> None:
    linear.add_issue("OPS-7", "Rotate the keys")

    ticket = ticket_from("https://linear.app/acme/issue/OPS-7/rotate-the-keys", linear_env)

    assert (ticket.key, ticket.title, ticket.body, ticket.branch_slug) == (
        "OPS-7",
        "Rotate the keys",
        "",
        "ops-7",
    )


@pytest.mark.parametrize("status", [200, 400])
def test_linear_missing_issue(linear: FakeLinear, linear_env: dict[str, str], status: int) -> None:
    linear.not_found_status = status

    message = refusal_of("ENG-404", linear_env)

    assert message.startswith(
        "Linear has no issue ENG-404, or LINEAR_API_KEY's workspace cannot see it"
    )


def test_linear_bad_key(linear: FakeLinear, linear_env: dict[str, str]) -> None:
    message = refusal_of("ENG-1", {**linear_env, "LINEAR_API_KEY": "lin_api_wrong"})

    assert message.startswith(
        "Linear rejected LINEAR_API_KEY (You need to authenticate to access this operation.)"
    )


def test_linear_without_key_is_refused(linear: FakeLinear) -> None:
    message = refusal_of("ENG-1", {"CAIRN_LINEAR_API_URL": linear.api_url})

    assert message.startswith("LINEAR_API_KEY is not set")
    assert linear.requests == []


def test_linear_rate_limit(linear: FakeLinear, linear_env: dict[str, str]) -> None:
    linear.rate_limited = True

    assert "rate limit is used up" in refusal_of("ENG-1", linear_env)


def test_linear_unreachable() -> None:
    env = {"LINEAR_API_KEY": LINEAR_TEST_KEY, "CAIRN_LINEAR_API_URL": closed_port_url()}

    assert "set CAIRN_LINEAR_API_URL" in refusal_of("ENG-1", env)


# --------------------------------------------------------------------------- pull requests


def test_create_pull_request(github: FakeGitHub, github_env: dict[str, str]) -> None:
    github.add_issue("acme/shop", 12, "Checkout fails")

    url = pull_request(
        github_env, "acme/shop", head="cairn/12", title="Fix checkout", body="Fixes #12"
    )

    assert url == "https://github.com/acme/shop/pull/13"
    [request] = github.requests
    assert (request.method, request.path) == ("POST", "/repos/acme/shop/pulls")
    assert request.json == {
        "title": "Fix checkout",
        "head": "cairn/12",
        "base": "main",
        "body": "Fixes #12",
    }
    assert request.headers["authorization"] == f"Bearer {GITHUB_TEST_TOKEN}"
    assert [pull["head"]["label"] for pull in github.pulls] == ["acme:cairn/12"]


def test_a_second_pull_request_for_a_branch_is_refused(
    github: FakeGitHub, github_env: dict[str, str]
) -> None:
    github.add_repo("acme/shop")
    pull_request(github_env, "acme/shop", head="cairn/12", title="A", body="")

    message = pull_refusal(github_env, "acme/shop", head="cairn/12", title="B", body="")

    assert message == (
        "GitHub refused the pull request cairn/12 → main in acme/shop: "
        "A pull request already exists for acme:cairn/12."
    )


def test_pull_request_into_an_unknown_repository(
    github: FakeGitHub, github_env: dict[str, str]
) -> None:
    message = pull_refusal(github_env, "acme/gone", head="cairn/1", title="A", body="")

    assert message.startswith("GitHub has no repository acme/gone, or GITHUB_TOKEN cannot see it")


def test_pull_request_with_a_bad_token(github: FakeGitHub, github_env: dict[str, str]) -> None:
    github.add_repo("acme/shop")
    env = {**github_env, "GITHUB_TOKEN": "ghp_wrong"}

    message = pull_refusal(env, "acme/shop", head="cairn/1", title="A", body="")

    assert message.startswith("GitHub rejected GITHUB_TOKEN (Bad credentials): set GITHUB_TOKEN")
    assert "write access to acme/shop's pull requests" in message


@pytest.mark.parametrize(
    ("remote", "repo"),
    [
        ("https://github.com/acme/shop.git", "acme/shop"),
        ("https://github.com/acme/shop", "acme/shop"),
        ("git@github.com:acme/shop.git", "acme/shop"),
        ("ssh://git@ghe.example.com:2222/tools/cli.git/", "tools/cli"),
        ("https://user:pw@github.com/acme/shop.git", "acme/shop"),
        ("https://gitlab.com/group/sub/project.git", None),
        ("/srv/git/shop.git", None),
        ("file:///srv/git/acme/shop", None),
        ("../shop", None),
    ],
)
def test_parse_github_remote(remote: str, repo: str | None) -> None:
    assert parse_github_remote(remote) == repo
