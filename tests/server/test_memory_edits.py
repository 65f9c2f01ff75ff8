"""The pure rules of a memory edit: exactly-once replace, inserts, limits, diffs."""

from __future__ import annotations

import pytest
from cairn_server.memory.edits import (
    MemoryEditError,
    check_limit,
    insert_at,
    replace_once,
    short_diff,
)

BLOCK = "Build: make\nTest: pytest -q\nLint: ruff check .\nTest data lives in tests/data"


def test_replace_changes_the_single_occurrence() -> None:
    assert replace_once("project", BLOCK, "pytest -q", "uv run pytest").splitlines()[1] == (
        "Test: uv run pytest"
    )


def test_replace_refuses_a_missing_string_and_hints_at_whitespace() -> None:
    with pytest.raises(MemoryEditError, match="not found.*different whitespace"):
        replace_once("project", BLOCK, "Build:  make", "x")
    with pytest.raises(MemoryEditError, match="not found in block 'project'"):
        replace_once("project", BLOCK, "cargo test", "x")


def test_replace_refuses_several_occurrences_naming_count_and_lines() -> None:
    with pytest.raises(MemoryEditError, match=r"occurs 2 times .*lines 2, 4"):
        replace_once("project", BLOCK, "Test", "Check")


@pytest.mark.parametrize(
    "decorated",
    ["2→Test: pytest -q", "Line 2: Test: pytest -q", "  2 | Test: pytest -q", "2: Test: pytest -q"],
)
def test_replace_rejects_line_number_prefixes(decorated: str) -> None:
    with pytest.raises(MemoryEditError, match="line numbers"):
        replace_once("project", BLOCK, decorated, "x")


def test_replace_rejects_the_memory_sections_markup() -> None:
    with pytest.raises(MemoryEditError, match="markup"):
        replace_once("project", BLOCK, '<memory_block label="project" chars="10/100">', "x")


def test_replace_refuses_an_empty_old_string() -> None:
    with pytest.raises(MemoryEditError, match="memory_insert"):
        replace_once("project", BLOCK, "", "x")


def test_insert_at_top_middle_and_end() -> None:
    assert insert_at("p", "a\nb", "top", 0) == "top\na\nb"
    assert insert_at("p", "a\nb", "mid", 1) == "a\nmid\nb"
    assert insert_at("p", "a\nb", "end", None) == "a\nb\nend"
    assert insert_at("p", "", "first", None) == "first"


def test_insert_outside_the_block_says_how_many_lines_it_has() -> None:
    with pytest.raises(MemoryEditError, match="has 2 lines"):
        insert_at("p", "a\nb", "x", 5)
    with pytest.raises(MemoryEditError, match="nothing to insert"):
        insert_at("p", "a", "", None)


def test_limit_error_says_how_far_over() -> None:
    check_limit("human", "x" * 100, 100)
    with pytest.raises(MemoryEditError, match=r"130 characters, 30 over its limit of 100"):
        check_limit("human", "x" * 130, 100)


def test_short_diff_shows_only_the_change_and_is_trimmed() -> None:
    diff = short_diff("project", BLOCK, BLOCK.replace("make", "just"))
    assert "-Build: make" in diff and "+Build: just" in diff
    assert "Lint" not in diff  # one line of context only
    long_old = "\n".join(f"line {i}" for i in range(200))
    trimmed = short_diff("p", long_old, "")
    assert trimmed.endswith("more diff lines") and len(trimmed.splitlines()) == 41
    assert short_diff("p", "same", "same") == "(no change)"
