"""Fake GitHub REST and Linear GraphQL servers on loopback, speaking the real wire shapes.

Shared by ticket tests: issues to read, pull requests to open, and the APIs' error answers
(bad credentials, not found, gone, rate limits, validation failures), with every request kept.
"""

from __future__ import annotations

import json
import re
import threading
import time
import uuid
from dataclasses import dataclass
from typing import Any

from cairn_fakes.runner import UVICORN_OPTIONS
from cairn_server.api.background import ThreadedServer
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route

GITHUB_TEST_TOKEN = "ghp_faketoken0123456789abcdefghijklmnop"
LINEAR_TEST_KEY = "lin_api_fakekey0123456789abcdefghijklmnop"
TIMESTAMP = "2024-05-01T12:00:00Z"
JsonObject = dict[str, Any]


@dataclass(frozen=True)
class ApiRequest:
    """A request as it reached a fake: method, path, lower-cased headers, JSON body (or None)."""

    method: str
    path: str
    headers: dict[str, str]
    json: Any


class _FakeApi(ThreadedServer):
    """A fake API on its own thread: `with FakeX() as fake:`; keeps every request."""

    def __init__(self, routes: list[Route]) -> None:
        super().__init__(Starlette(routes=routes), **UVICORN_OPTIONS)
        self._lock = threading.Lock()
        self._requests: list[ApiRequest] = []

    @property
    def requests(self) -> list[ApiRequest]:
        """Every request received so far, oldest first (a copy)."""
        with self._lock:
            return list(self._requests)

    async def _record(self, request: Request) -> ApiRequest:
        raw = await request.body()
        try:
            body = json.loads(raw) if raw else None
        except ValueError:
            body = None
        recorded = ApiRequest(
            request.method,
            request.url.path,
            {name.lower(): value for name, value in request.headers.items()},
            body,
        )
        with self._lock:
            self._requests.append(recorded)
        return recorded

    def reset(self) -> None:
        """Back to a fresh server (for module-scoped fakes): no data, no switches, no requests."""
        with self._lock:
            self._requests.clear()


# --------------------------------------------------------------------------- GitHub


class FakeGitHub(_FakeApi):
    """GitHub's REST API: GET /repos/{o}/{r}/issues/{n} and POST /repos/{o}/{r}/pulls.

    Accepts `Authorization: Bearer <token>` (or `token <token>`); `prefix="/api/v3"` makes it
    look like GitHub Enterprise. Set `rate_limited` to answer everything with the 403 of a
    used-up rate limit.
    """

    def __init__(
        self,
        *,
        token: str = GITHUB_TEST_TOKEN,
        prefix: str = "",
        web_url: str = "https://github.com",
    ) -> None:
        repo_path = prefix + "/repos/{owner}/{repo}"
        super().__init__(
            [
                Route(repo_path + "/issues/{number:int}", self._get_issue, methods=["GET"]),
                Route(repo_path + "/pulls", self._create_pull, methods=["POST"]),
                Route("/{path:path}", self._unknown, methods=["GET", "POST", "PATCH", "PUT"]),
            ]
        )
        self.token = token
        self.prefix = prefix
        self.web_url = web_url.rstrip("/")
        self.rate_limited = False
        self.pulls_rate_limited = False  # only opening pull requests hits the limit
        self.rate_limit_reset = int(time.time()) + 1800
        self._issues: dict[tuple[str, str, int], JsonObject] = {}
        self._deleted: set[tuple[str, str, int]] = set()
        self._repos: set[tuple[str, str]] = set()
        self._pulls: list[JsonObject] = []

    @property
    def api_url(self) -> str:
        return f"{self.url}{self.prefix}"

    def reset(self) -> None:
        super().reset()
        self.rate_limited = self.pulls_rate_limited = False
        with self._lock:
            self._issues.clear()
            self._deleted.clear()
            self._repos.clear()
            self._pulls.clear()

    @property
    def pulls(self) -> list[JsonObject]:
        """The pull requests opened so far, as GitHub answered them."""
        with self._lock:
            return list(self._pulls)

    def add_repo(self, repo: str) -> None:
        """Make "owner/repo" exist (adding an issue does this too)."""
        owner, name = repo.split("/")
        with self._lock:
            self._repos.add((owner, name))

    def add_issue(
        self,
        repo: str,
        number: int,
        title: str,
        body: str | None = "",
        *,
        labels: tuple[str, ...] = (),
        pull_request: bool = False,
    ) -> JsonObject:
        """Issue `number` of "owner/repo" as GET answers it (body None: left empty on GitHub)."""
        owner, name = repo.split("/")
        kind = "pull" if pull_request else "issues"
        api_repo = f"{self.api_url}/repos/{repo}"
        issue: JsonObject = {
            "url": f"{api_repo}/issues/{number}",
            "repository_url": api_repo,
            "labels_url": f"{api_repo}/issues/{number}/labels{{/name}}",
            "comments_url": f"{api_repo}/issues/{number}/comments",
            "html_url": f"{self.web_url}/{repo}/{kind}/{number}",
            "id": 1_000_000 + number,
            "node_id": f"I_kwDOFake{number:06d}",
            "number": number,
            "title": title,
            "user": _github_user("octocat"),
            "labels": [
                {"id": i + 1, "name": label, "color": "d73a4a", "default": False}
                for i, label in enumerate(labels)
            ],
            "state": "open",
            "locked": False,
            "assignee": None,
            "assignees": [],
            "milestone": None,
            "comments": 0,
            "created_at": TIMESTAMP,
            "updated_at": TIMESTAMP,
            "closed_at": None,
            "author_association": "OWNER",
            "active_lock_reason": None,
            "body": body,
            "state_reason": None,
        }
        if pull_request:
            issue["pull_request"] = {
                "url": f"{api_repo}/pulls/{number}",
                "html_url": f"{self.web_url}/{repo}/pull/{number}",
                "diff_url": f"{self.web_url}/{repo}/pull/{number}.diff",
                "patch_url": f"{self.web_url}/{repo}/pull/{number}.patch",
                "merged_at": None,
            }
        with self._lock:
            self._repos.add((owner, name))
            self._issues[(owner, name, number)] = issue
        return issue

    def delete_issue(self, repo: str, number: int) -> None:
        """GET answers 410 Gone from now on, as for a deleted issue."""
        owner, name = repo.split("/")
        with self._lock:
            self._issues.pop((owner, name, number), None)
            self._deleted.add((owner, name, number))

    # ----------------------------------------------------------------- endpoints

    async def _get_issue(self, request: Request) -> Response:
        await self._record(request)
        owner, name = request.path_params["owner"], request.path_params["repo"]
        number: int = request.path_params["number"]
        if refusal := self._refusal(request, anonymous_status=404):
            return refusal
        with self._lock:
            issue = self._issues.get((owner, name, number))
            deleted = (owner, name, number) in self._deleted
        if deleted:
            return self._error(410, "This issue was deleted", "issues/issues#get-an-issue")
        if issue is None:
            return self._error(404, "Not Found", "issues/issues#get-an-issue")
        return self._json(200, issue)

    async def _create_pull(self, request: Request) -> Response:
        recorded = await self._record(request)
        owner, name = request.path_params["owner"], request.path_params["repo"]
        docs = "pulls/pulls#create-a-pull-request"
        if refusal := self._refusal(request, anonymous_status=401):
            return refusal
        if self.pulls_rate_limited:
            return self._rate_limit_exceeded()
        with self._lock:
            known = (owner, name) in self._repos
        if not known:
            return self._error(404, "Not Found", docs)
        fields = recorded.json if isinstance(recorded.json, dict) else {}
        for field in ("head", "base", "title"):
            if not isinstance(fields.get(field), str):
                return self._error(422, f'Invalid request.\n\n"{field}" wasn\'t supplied.', docs)
        head: str = fields["head"]
        head_label = head if ":" in head else f"{owner}:{head}"
        head_ref = head_label.split(":", 1)[1]
        if head_label == f"{owner}:{fields['base']}":
            return self._validation_failed(f"No commits between {fields['base']} and {head_ref}")
        with self._lock:
            if any(
                p["head"]["label"] == head_label and p["base"]["ref"] == fields["base"]
                for p in self._pulls
            ):
                return self._validation_failed(f"A pull request already exists for {head_label}.")
            number = 1 + max(
                (n for (o, r, n) in [*self._issues, *self._deleted] if (o, r) == (owner, name)),
                default=0,
            )
        repo = f"{owner}/{name}"
        issue = self.add_issue(repo, number, fields["title"], fields.get("body"), pull_request=True)
        pull = {
            "url": f"{self.api_url}/repos/{repo}/pulls/{number}",
            "id": 2_000_000 + number,
            "node_id": f"PR_kwDOFake{number:06d}",
            "html_url": issue["pull_request"]["html_url"],
            "diff_url": issue["pull_request"]["diff_url"],
            "patch_url": issue["pull_request"]["patch_url"],
            "issue_url": issue["url"],
            "number": number,
            "state": "open",
            "locked": False,
            "title": fields["title"],
            "user": _github_user("octocat"),
            "body": fields.get("body"),
            "created_at": TIMESTAMP,
            "updated_at": TIMESTAMP,
            "head": {"label": head_label, "ref": head_ref, "sha": "0" * 40},
            "base": {"label": f"{owner}:{fields['base']}", "ref": fields["base"], "sha": "1" * 40},
            "draft": bool(fields.get("draft", False)),
            "merged": False,
            "mergeable": None,
            "author_association": "OWNER",
        }
        with self._lock:
            self._pulls.append(pull)
        return self._json(201, pull, location=pull["url"])

    async def _unknown(self, request: Request) -> Response:
        await self._record(request)
        return self._error(404, "Not Found", "rest")

    # ----------------------------------------------------------------- answers

    def _refusal(self, request: Request, *, anonymous_status: int) -> Response | None:
        """GitHub's answer when the request may not go on: credentials, rate limit."""
        authorization = request.headers.get("authorization")
        if authorization is None:
            # Anonymous reads of a private repository look like a missing one.
            if anonymous_status == 404:
                return self._error(404, "Not Found", "rest")
            return self._error(401, "Requires authentication", "rest")
        if authorization not in (f"Bearer {self.token}", f"token {self.token}"):
            return self._error(401, "Bad credentials", "rest")
        if self.rate_limited:
            return self._rate_limit_exceeded()
        return None

    def _rate_limit_exceeded(self) -> Response:
        message = (
            "API rate limit exceeded for user ID 1. If you reach out to GitHub Support "
            "for help, please include the request ID FAKE:0000:0000000:0000000:00000000."
        )
        return self._error(403, message, "rest/overview/rate-limits-for-the-rest-api")

    def _validation_failed(self, message: str) -> Response:
        body = {
            "message": "Validation Failed",
            "errors": [{"resource": "PullRequest", "code": "custom", "message": message}],
            "documentation_url": "https://docs.github.com/rest/pulls/pulls#create-a-pull-request",
            "status": "422",
        }
        return self._json(422, body)

    def _error(self, status: int, message: str, docs: str) -> Response:
        body = {
            "message": message,
            "documentation_url": f"https://docs.github.com/{docs}",
            "status": str(status),
        }
        return self._json(status, body)

    def _json(self, status: int, body: JsonObject, *, location: str | None = None) -> Response:
        remaining = 0 if self.rate_limited else 4999
        headers = {
            "x-github-api-version-selected": "2022-11-28",
            "x-ratelimit-limit": "5000",
            "x-ratelimit-remaining": str(remaining),
            "x-ratelimit-reset": str(self.rate_limit_reset),
            "x-ratelimit-used": str(5000 - remaining),
            "x-ratelimit-resource": "core",
        }
        if location:
            headers["location"] = location
        return JSONResponse(body, status_code=status, headers=headers)


def _github_user(login: str) -> JsonObject:
    return {
        "login": login,
        "id": 1,
        "node_id": "MDQ6VXNlcjE=",
        "html_url": f"https://github.com/{login}",
        "type": "User",
        "site_admin": False,
    }


# --------------------------------------------------------------------------- Linear

ISSUE_FIELDS = frozenset(
    {
        "id",
        "identifier",
        "number",
        "title",
        "description",
        "url",
        "priority",
        "branchName",
        "createdAt",
    }
)
ISSUE_SELECTION = re.compile(r"\bissue\s*\(\s*id\s*:\s*\$id\s*\)\s*\{(?P<fields>[^{}]*)\}")


class FakeLinear(_FakeApi):
    """Linear's GraphQL endpoint (POST /graphql) for `issue(id: $id) { scalar fields }`.

    Accepts `Authorization: <api key>` (no "Bearer"); answers with Linear's error shapes.
    Linear has answered "not found" both as 200 and 400: `not_found_status` picks one.
    """

    def __init__(self, *, api_key: str = LINEAR_TEST_KEY, not_found_status: int = 200) -> None:
        super().__init__([Route("/graphql", self._graphql, methods=["POST"])])
        self.api_key = api_key
        self.not_found_status = self._default_not_found_status = not_found_status
        self.rate_limited = False
        self._issues: dict[str, JsonObject] = {}

    @property
    def api_url(self) -> str:
        return f"{self.url}/graphql"

    def reset(self) -> None:
        super().reset()
        self.rate_limited = False
        self.not_found_status = self._default_not_found_status
        with self._lock:
            self._issues.clear()

    def add_issue(
        self, identifier: str, title: str, description: str | None = None, *, team: str = "acme"
    ) -> JsonObject:
        """Issue `identifier` ("ENG-42"); description None: left empty in Linear."""
        slug = re.sub(r"[^a-z0-9]+", "-", title.lower()).strip("-")
        issue = {
            "id": str(uuid.uuid5(uuid.NAMESPACE_URL, identifier)),
            "identifier": identifier,
            "number": int(identifier.rsplit("-", 1)[1]),
            "title": title,
            "description": description,
            "url": f"https://linear.app/{team}/issue/{identifier}/{slug}",
            "priority": 0,
            "branchName": f"{identifier.lower()}-{slug}",
            "createdAt": "2024-05-01T12:00:00.000Z",
        }
        with self._lock:
            self._issues[identifier] = issue
        return issue

    async def _graphql(self, request: Request) -> Response:
        recorded = await self._record(request)
        if self.rate_limited:
            return _linear_error(
                400, "Rate limit exceeded", "RATELIMITED", "ratelimited", "Rate limit exceeded."
            )
        if recorded.headers.get("authorization") != self.api_key:
            return _linear_error(
                400,
                "Authentication required, not authenticated",
                "AUTHENTICATION_ERROR",
                "authentication error",
                "You need to authenticate to access this operation.",
            )
        body = recorded.json if isinstance(recorded.json, dict) else {}
        selection = ISSUE_SELECTION.search(str(body.get("query", "")))
        variables = body.get("variables")
        issue_id = variables.get("id") if isinstance(variables, dict) else None
        if selection is None or not isinstance(issue_id, str):
            return _invalid_query("This fake answers only issue(id: $id) { fields } with $id set.")
        with self._lock:
            issue = self._issues.get(issue_id) or next(
                (i for i in self._issues.values() if i["id"] == issue_id), None
            )
        fields = selection["fields"].split()
        unknown = [field for field in fields if field not in ISSUE_FIELDS]
        if unknown:
            return _invalid_query(f'Cannot query field "{unknown[0]}" on type "Issue".')
        if issue is None:
            return _linear_error(
                self.not_found_status,
                "Entity not found: Issue",
                "INPUT_ERROR",
                "invalid input",
                "Could not find referenced Issue.",
                data=None,
            )
        return JSONResponse({"data": {"issue": {field: issue[field] for field in fields}}})


def _invalid_query(message: str) -> Response:
    return _linear_error(400, message, "GRAPHQL_VALIDATION_FAILED", "graphql error", message)


def _linear_error(
    status: int, message: str, code: str, kind: str, shown: str, **extra: Any
) -> Response:
    error = {
        "message": message,
        "extensions": {"type": kind, "code": code, "userPresentableMessage": shown},
    }
    return JSONResponse({"errors": [error], **extra}, status_code=status)
