"""What a person is shown of a tool result: the summary under the call and the capped text."""

from __future__ import annotations

from cairn_protocol.results import failure_reason, result_preview


def test_a_read_is_summarised_by_its_lines_and_a_short_result_by_itself() -> None:
    assert result_preview("read", "1\ta\n2\tb\n3\tc\n").summary == "3 lines"
    assert result_preview("glob", "src/a.py\nsrc/b.py").summary == "2 paths"
    assert result_preview("edit", "Done: edited src/app.py.").summary == "Done: edited src/app.py."
    assert result_preview("memory_insert", "one\ntwo\nthree").summary == "one … +2 lines"
    assert result_preview("read", "").summary == "(no output)"


def test_a_command_is_summarised_by_its_exit_code_and_what_it_printed() -> None:
    printed = "exit code: 0\nstdout:\n" + "\n".join(f"ok {n}" for n in range(42))
    assert result_preview("shell", printed).summary == "exit code 0 · 42 lines of output"
    one = "exit code: 1\nstderr:\nno such file"
    assert result_preview("shell", one).summary == "exit code 1 · no such file"
    silent = "exit code: 0\n(no output)"
    assert result_preview("shell", silent).summary == "exit code 0 · no output"


def test_a_long_result_keeps_its_head_and_tail_and_cuts_long_lines() -> None:
    content = "\n".join(f"line {n}" for n in range(1, 201)) + "\n" + "x" * 1000
    preview = result_preview("read", content)
    shown = preview.text.splitlines()
    assert preview.lines == 201
    assert shown[:2] == ["line 1", "line 2"]
    assert "… 141 lines not shown …" in shown
    assert shown[-1] == "x" * 239 + "…"
    assert len(shown) == 61


def test_a_failure_without_a_reason_is_told_by_its_first_line() -> None:
    assert failure_reason("regex parse error", "ignored") == "regex parse error"
    assert failure_reason(None, "  boom\nmore") == "boom"
    assert failure_reason(None, "") is None
