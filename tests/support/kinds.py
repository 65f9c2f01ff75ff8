"""Which kind a test is: `e2e` (tests/e2e), `integration` (it starts something), or `unit`.

A test is an integration test when it, a fixture it uses, or a test helper either calls
(followed through the tests' own modules) starts a server, a subprocess, a socket, tmux or a
Textual Pilot app, or uses the PostgreSQL variant of `database_url`. Everything else runs in
this process against temporary files only: `uv run pytest -m unit` runs in seconds.
"""

from __future__ import annotations

import inspect
import types
from collections.abc import Callable, Iterator
from functools import cache
from pathlib import Path

import pytest

TESTS_ROOT = Path(__file__).resolve().parents[1]
KINDS = {
    "unit": "in-process, temporary files only: no server, subprocess, socket, tmux or Pilot app",
    "integration": "starts a server, subprocess, socket or Textual Pilot app, or uses PostgreSQL",
    "e2e": "the whole product from the outside (tests/e2e): processes, terminals, tmux",
}
# What starting something looks like in test code (support helpers included).
STARTS_SOMETHING = (
    "FakeModelServer",
    "cairn_server(",
    "BackgroundServer",
    "ThreadedServer",
    "bind_listening",
    "run_test(",
    "snap_compare",
    "subprocess",
    "Popen",
    "terminal(",
    "tmux",
    "WireClient",
    "websockets",
    "socket.",
    "asyncpg",
    "make_repo(",
    "run_git(",
    "launch_server",
    "start_server",
)
# Fixtures whose cost depends on their parameter, judged by it rather than by their code.
PARAMETRIZED_BACKEND = "database_url"


def kind_of(item: pytest.Item) -> str:
    path = Path(str(item.fspath)).resolve()
    if path.is_relative_to(TESTS_ROOT / "e2e"):
        return "e2e"
    callspec = getattr(item, "callspec", None)
    if callspec is not None and callspec.params.get(PARAMETRIZED_BACKEND) == "postgresql":
        return "integration"
    function = getattr(item, "function", None)
    if function is not None and starts_something(function):
        return "integration"
    if any(starts_something(fixture) for fixture in fixture_functions(item)):
        return "integration"
    return "unit"


def fixture_functions(item: pytest.Item) -> Iterator[Callable[..., object]]:
    info = getattr(item, "_fixtureinfo", None)
    if info is None:
        return
    for name, definitions in info.name2fixturedefs.items():
        if name == PARAMETRIZED_BACKEND:
            continue
        for definition in definitions:
            yield definition.func


@cache
def starts_something(function: Callable[..., object]) -> bool:
    """Whether this test code, or a test helper it names, starts something."""
    return _starts_something(function, frozenset())


def _starts_something(code_owner: object, seen: frozenset[object]) -> bool:
    if code_owner in seen or not _is_test_code(code_owner):
        return False
    try:
        source = inspect.getsource(code_owner)  # type: ignore[arg-type]
    except (OSError, TypeError):
        return False
    if any(pattern in source for pattern in STARTS_SOMETHING):
        return True
    seen = seen | {code_owner}
    return any(_starts_something(helper, seen) for helper in _named_helpers(code_owner))


def _named_helpers(code_owner: object) -> Iterator[object]:
    """The module-level functions and classes this code refers to by name."""
    function = inspect.unwrap(code_owner) if callable(code_owner) else code_owner
    code = getattr(function, "__code__", None)
    namespace = getattr(function, "__globals__", None)
    if code is None or namespace is None:
        return
    for name in _names(code):
        value = namespace.get(name)
        if isinstance(value, types.FunctionType | type):
            yield value


def _names(code: types.CodeType) -> Iterator[str]:
    yield from code.co_names
    for constant in code.co_consts:
        if isinstance(constant, types.CodeType):  # lambdas, comprehensions, inner functions
            yield from _names(constant)


def _is_test_code(code_owner: object) -> bool:
    try:
        source_file = inspect.getsourcefile(code_owner)  # type: ignore[arg-type]
    except TypeError:
        return False
    return source_file is not None and Path(source_file).resolve().is_relative_to(TESTS_ROOT)
