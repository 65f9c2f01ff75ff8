"""Linear's GraphQL API for `cairn ticket`: an issue (ENG-42) read as a ticket.

Owns the API URL (CAIRN_LINEAR_API_URL), the LINEAR_API_KEY, and turning Linear's GraphQL
errors into one-line TicketErrors.
"""

from __future__ import annotations

from typing import Any

from cairn_client.config import TicketSettings
from cairn_client.ticket.sources import (
    DEFAULT_TIMEOUT_S,
    Ticket,
    TicketError,
    clean_text,
    json_body,
    send,
)

DEFAULT_API_URL = "https://api.linear.app/graphql"
API_URL_SETTING = "CAIRN_LINEAR_API_URL"
KEY_SETTING = "LINEAR_API_KEY"
ISSUE_QUERY = "query Issue($id: String!) { issue(id: $id) { identifier title description url } }"


def fetch_issue(
    key: str, *, settings: TicketSettings, timeout_s: float = DEFAULT_TIMEOUT_S
) -> Ticket:
    """Issue `key` ("ENG-42") as a ticket."""
    api_key = settings.linear_api_key
    if not api_key:
        raise TicketError(
            f"{KEY_SETTING} is not set: create a personal API key in Linear "
            "(Settings → Security & access) and set LINEAR_API_KEY to it"
        )
    url = settings.linear_api_url or DEFAULT_API_URL
    response = send(
        "POST",
        url,
        service="Linear",
        url_setting=API_URL_SETTING,
        # Personal API keys go as they are; OAuth tokens carry their own "Bearer ".
        headers={"Authorization": api_key},
        json={"query": ISSUE_QUERY, "variables": {"id": key}},
        timeout_s=timeout_s,
    )
    answer = json_body(response)
    errors = answer.get("errors") if isinstance(answer, dict) else None
    if isinstance(errors, list) and errors:
        raise _failure(errors[0], key)
    if response.status_code != 200 or not isinstance(answer, dict):
        raise TicketError(
            f"Linear answered HTTP {response.status_code} at {url} without an issue: "
            f"try again later, or check {API_URL_SETTING}"
        )
    data = answer.get("data")
    issue = data.get("issue") if isinstance(data, dict) else None
    if issue is None:
        raise TicketError(_not_found(key))
    if not (
        isinstance(issue, dict)
        and isinstance(issue.get("identifier"), str)
        and isinstance(issue.get("title"), str)
        and isinstance(issue.get("description"), str | None)
        and isinstance(issue.get("url"), str)
    ):
        raise TicketError(f"Linear's answer at {url} is not an issue: check {API_URL_SETTING}")
    identifier: str = issue["identifier"]
    title, body = clean_text(issue["title"]), clean_text(issue["description"])
    if not title and not body:
        raise TicketError(f"{identifier} has no title and no description: write the ticket first")
    return Ticket("linear", identifier, title, body, issue["url"], identifier.lower())


def _failure(error: Any, key: str) -> TicketError:
    """The TicketError for Linear's first GraphQL error."""
    error = error if isinstance(error, dict) else {}
    extensions = error.get("extensions")
    extensions = extensions if isinstance(extensions, dict) else {}
    code, kind = str(extensions.get("code", "")), str(extensions.get("type", ""))
    message = str(error.get("message", ""))
    shown = str(extensions.get("userPresentableMessage") or message or "unknown error")
    if code == "AUTHENTICATION_ERROR" or kind == "authentication error":
        return TicketError(
            f"Linear rejected LINEAR_API_KEY ({shown}): create a new personal API key "
            "in Linear (Settings → Security & access) and set LINEAR_API_KEY to it"
        )
    if message.startswith("Entity not found") or "could not find" in shown.lower():
        return TicketError(_not_found(key))
    if code == "RATELIMITED":
        return TicketError(f"Linear's API rate limit is used up ({shown}): wait a minute, retry")
    if code == "FORBIDDEN" or kind == "forbidden":
        return TicketError(
            f"Linear forbids reading {key} ({shown}): use a key of a member of its team"
        )
    return TicketError(f"Linear could not load {key}: {shown}")


def _not_found(key: str) -> str:
    return (
        f"Linear has no issue {key}, or LINEAR_API_KEY's workspace cannot see it: "
        "check the key (team prefix and number)"
    )
