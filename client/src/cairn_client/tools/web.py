"""Server tool calls this client only approves (fetch_url): what is decided on and shown.

Owns reading an approval-only request (the full URL and the host rules name), its preview for
the approval screen, and refusing a request for anything this client cannot judge.
"""

from __future__ import annotations

from urllib.parse import urlsplit

from cairn_protocol import ToolRequest
from cairn_protocol.redaction import redact
from cairn_protocol.tools import FETCH_URL

from cairn_client.tools.base import PreparedCall, Preview, WebFetch

MAX_URL_CHARS = 2048  # as the server's own limit: a longer URL is never fetched


def prepare_approval(request: ToolRequest) -> PreparedCall:
    """An approval-only request, ready for the policy: a fetch_url with its host, or an error
    (answered without asking) for a tool or URL this client cannot judge."""
    url = request.arguments.get("url")
    if request.tool != FETCH_URL:
        why = f"this client cannot approve {request.tool!r}: it approves {FETCH_URL} calls only"
        return _refused(request, why)
    if not isinstance(url, str):
        return _refused(request, "the fetch_url request has no url to approve")
    fetch, problem = read_url(url)
    if fetch is None:
        return _refused(request, f"the URL cannot be approved: {problem}")
    return PreparedCall(request, None, fetch_preview(fetch), web=fetch)


def read_url(url: str) -> tuple[WebFetch | None, str]:
    """The page a URL names, or why it cannot be judged (only plain http(s) URLs with a host,
    as the server sends them after checking)."""
    if len(url) > MAX_URL_CHARS or any(char.isspace() or char == "\\" for char in url):
        return None, "it is too long or holds spaces or backslashes"
    try:
        parts = urlsplit(url)
        host = parts.hostname
        _ = parts.port  # a malformed port raises here
    except ValueError as exc:
        return None, str(exc)
    if parts.scheme not in ("http", "https"):
        return None, "only http and https URLs are fetched"
    if parts.username is not None or parts.password is not None or "@" in parts.netloc:
        return None, "it names a user or password"
    if not host:
        return None, "it has no host"
    return WebFetch(url, host.rstrip(".")), ""


def fetch_preview(fetch: WebFetch) -> Preview:
    """The whole URL as it will be fetched: its path and query go to that host."""
    body = f"{fetch.url}\n\nThe server fetches it: {fetch.host} gets the whole URL, query too."
    return Preview(f"Fetch a web page from {fetch.host}", "command", body)


def _refused(request: ToolRequest, why: str) -> PreparedCall:
    shown = redact(str(request.arguments.get("url", "")))[0][:200]
    preview = Preview(f"Approve {request.tool}", "info", f"{request.tool} {shown}")
    return PreparedCall(request, None, preview, error=redact(why)[0])
