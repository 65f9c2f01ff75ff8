"""GitHub's REST API for `cairn ticket`: issues read as tickets, pull requests opened.

Owns the API base (api.github.com, GitHub Enterprise's /api/v3, CAIRN_GITHUB_API_URL), the
GITHUB_TOKEN, and turning GitHub's error answers into one-line TicketErrors.
"""

from __future__ import annotations

import math
import re
import time
from datetime import UTC, datetime
from typing import Any
from urllib.parse import urlsplit

import httpx
from cairn_protocol.workspace import normalise_origin

from cairn_client.config import TicketSettings
from cairn_client.ticket.sources import (
    DEFAULT_TIMEOUT_S,
    Ticket,
    TicketError,
    clean_text,
    json_body,
    send,
)

DEFAULT_API_URL = "https://api.github.com"
API_URL_SETTING = "CAIRN_GITHUB_API_URL"
TOKEN_SETTING = "GITHUB_TOKEN"
PUBLIC_HOSTS = frozenset({"github.com", "www.github.com", "api.github.com"})
REPO = re.compile(r"^[A-Za-z0-9][A-Za-z0-9-]*/[A-Za-z0-9._-]+$")


def github_api_url(settings: TicketSettings, site: str | None = None) -> str:
    """The REST API base: CAIRN_GITHUB_API_URL when set; else, for a GitHub Enterprise `site`
    (`https://ghe.example.com` or a bare host), its /api/v3; else api.github.com."""
    override = settings.github_api_url
    if override:
        return override.rstrip("/")
    if site:
        parts = urlsplit(site if "://" in site else f"https://{site}")
        if parts.hostname and parts.hostname.lower() not in PUBLIC_HOSTS:
            return f"{parts.scheme}://{parts.netloc}/api/v3"
    return DEFAULT_API_URL


def parse_github_remote(url: str) -> str | None:
    """ "owner/repo" of an origin URL (https://github.com/o/r.git, git@github.com:o/r.git,
    ssh://git@host/o/r), or None when it does not name one (a local path, nested groups)."""
    host, _, path = normalise_origin(url).partition("/")
    if not host or not REPO.match(path) or path.endswith("/"):
        return None
    return path


def fetch_issue(
    repo: str,
    number: int,
    *,
    settings: TicketSettings,
    api_url: str | None = None,
    timeout_s: float = DEFAULT_TIMEOUT_S,
) -> Ticket:
    """Issue `number` of `repo` as a ticket. A pull request's number works too: its
    description is as good a ticket as an issue's."""
    access = f"read access to {repo}'s issues"
    url = _repo_url(settings, api_url, repo, f"issues/{number}")
    response = _send("GET", url, settings, access, timeout_s)
    name = f"{repo}#{number}"
    if response.status_code != 200:
        raise _failure(
            response,
            subject=f"issue {name}",
            missing=f"GitHub has no issue {name}, or GITHUB_TOKEN cannot see {repo}: "
            f"check the number, and give the token read access to {repo}",
            access=access,
        )
    issue = json_body(response)
    if not (
        isinstance(issue, dict)
        and isinstance(issue.get("title"), str)
        and isinstance(issue.get("body"), str | None)
        and isinstance(issue.get("html_url"), str)
    ):
        raise TicketError(
            f"GitHub's answer for {url} is not an issue: check {API_URL_SETTING} names the API"
        )
    title, body = clean_text(issue["title"]), clean_text(issue["body"])
    if not title and not body:
        raise TicketError(f"issue {name} has no title and no text: write the ticket in it first")
    return Ticket("github", name, title, body, issue["html_url"], str(number), repo)


def create_pull_request(
    repo: str,
    *,
    head: str,
    base: str,
    title: str,
    body: str,
    settings: TicketSettings,
    api_url: str | None = None,
    timeout_s: float = DEFAULT_TIMEOUT_S,
) -> str:
    """Open a pull request of `head` into `base` in `repo` ("owner/repo"); its page's URL.
    `api_url` defaults to github_api_url(settings) (pass the Enterprise one for GHE remotes)."""
    if not REPO.match(repo):
        raise TicketError(f"{repo!r} is not a GitHub repository: give it as owner/repo")
    access = f"write access to {repo}'s pull requests"
    url = _repo_url(settings, api_url, repo, "pulls")
    payload = {"title": title, "head": head, "base": base, "body": body}
    response = _send("POST", url, settings, access, timeout_s, payload)
    if response.status_code == 422:
        raise TicketError(
            f"GitHub refused the pull request {head} → {base} in {repo}: "
            f"{_validation_details(json_body(response))}"
        )
    if response.status_code != 201:
        raise _failure(
            response,
            subject=f"pull requests of {repo}",
            missing=f"GitHub has no repository {repo}, or GITHUB_TOKEN cannot see it: "
            f"check the origin remote, and give the token {access}",
            access=access,
        )
    pull = json_body(response)
    if not isinstance(pull, dict) or not isinstance(pull.get("html_url"), str):
        raise TicketError(f"GitHub's answer for {url} is not a pull request: check the API URL")
    html_url: str = pull["html_url"]
    return html_url


def _token(settings: TicketSettings, access: str) -> str:
    token = settings.github_token
    if not token:
        raise TicketError(
            f"{TOKEN_SETTING} is not set: set it to a GitHub token with {access} "
            "(e.g. export GITHUB_TOKEN=$(gh auth token))"
        )
    return token


def _repo_url(settings: TicketSettings, api_url: str | None, repo: str, path: str) -> str:
    """`path` of `repo` in the API at `api_url` (default: github_api_url(settings))."""
    return f"{api_url or github_api_url(settings)}/repos/{repo}/{path}"


def _send(
    method: str,
    url: str,
    settings: TicketSettings,
    access: str,
    timeout_s: float,
    payload: Any = None,
) -> httpx.Response:
    """`method` on `url` with GITHUB_TOKEN, which must give `access` (said when it is unset)."""
    headers = {
        "Accept": "application/vnd.github+json",
        "X-GitHub-Api-Version": "2022-11-28",
        "Authorization": f"Bearer {_token(settings, access)}",
    }
    return send(
        method,
        url,
        service="GitHub",
        url_setting=API_URL_SETTING,
        headers=headers,
        timeout_s=timeout_s,
        json=payload,
    )


def _failure(response: httpx.Response, *, subject: str, missing: str, access: str) -> TicketError:
    """The TicketError for a GitHub error answer about `subject`; `missing` is the text for 404."""
    status, message = response.status_code, _message(json_body(response))
    if status == 401:
        return TicketError(
            f"GitHub rejected GITHUB_TOKEN ({message or 'unauthorized'}): "
            f"set GITHUB_TOKEN to a valid token with {access}"
        )
    if status == 429 or (status == 403 and _rate_limited(response)):
        return TicketError(f"GitHub's API rate limit is used up: {_rate_limit_advice(response)}")
    if status == 403:
        return TicketError(
            f"GitHub forbids {subject} ({message or 'forbidden'}): give GITHUB_TOKEN {access}"
        )
    if status == 404:
        return TicketError(missing)
    if status == 410:
        return TicketError(
            f"GitHub says {subject} is gone ({message or 'gone'}): "
            "it was deleted, or the repository's issues are turned off"
        )
    advice = "try again later" if status >= 500 else "check the request"
    return TicketError(
        f"GitHub answered HTTP {status} for {response.request.url}"
        f"{f' ({message})' if message else ''}: {advice}"
    )


def _message(data: Any) -> str:
    message = data.get("message") if isinstance(data, dict) else None
    return message if isinstance(message, str) else ""


def _rate_limited(response: httpx.Response) -> bool:
    return (
        response.headers.get("x-ratelimit-remaining") == "0"
        or "retry-after" in response.headers
        or "rate limit" in _message(json_body(response)).lower()
    )


def _rate_limit_advice(response: httpx.Response) -> str:
    retry_after = response.headers.get("retry-after", "")
    if retry_after.isdigit():
        return f"try again in {retry_after} s"
    reset = response.headers.get("x-ratelimit-reset", "")
    if not reset.isdigit():
        return "wait a while and try again"
    at = datetime.fromtimestamp(int(reset), tz=UTC)
    minutes = max(0, math.ceil((int(reset) - time.time()) / 60))
    return f"it resets at {at:%H:%M} UTC (in {minutes} min); try again then"


def _validation_details(data: Any) -> str:
    """What a 422 "Validation Failed" answer objects to: the inner errors' messages."""
    errors = data.get("errors") if isinstance(data, dict) else None
    errors = errors if isinstance(errors, list) else []
    details: list[str] = []
    for error in errors:
        if isinstance(error, str):
            details.append(error)
        elif isinstance(error, dict) and isinstance(error.get("message"), str):
            details.append(error["message"])
        elif isinstance(error, dict) and error.get("field"):
            details.append(f"{error['field']} is {error.get('code', 'invalid')}")
    if any(isinstance(e, dict) and e.get("field") in ("head", "base") for e in errors):
        details.append("push the branch first, and check the base branch exists")
    return "; ".join(details) or _message(data) or "validation failed"
