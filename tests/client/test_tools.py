"""The local tools on real files in real git repositories, with the real ripgrep."""

from __future__ import annotations

import asyncio
import os
import signal
import stat
import time
from pathlib import Path
from typing import Any

import pytest
from cairn_client.tools import shell
from cairn_client.tools.base import FileChange, PreparedCall, ToolOutcome
from cairn_client.tools.changes import StaleChange, apply_changes, render_diff
from cairn_client.tools.paths import PathOutsideWorkspace, relative_display, resolve_in_workspace
from cairn_client.tools.registry import execute_call, prepare_call
from cairn_client.undo import UndoStack
from cairn_protocol import ToolRequest
from support.settings import outside_sandbox, unsandboxed
from support.waiting import until

_calls = 0


def prepare(root: Path, tool: str, **arguments: Any) -> PreparedCall:
    global _calls
    _calls += 1
    request = ToolRequest(run_id="run-1", call_id=f"call-{_calls}", tool=tool, arguments=arguments)
    return prepare_call(root, request)


async def execute(root: Path, prepared: PreparedCall) -> ToolOutcome:
    """`prepared` executed as a session would, shell commands outside any sandbox."""
    return await execute_call(root, prepared, placement=outside_sandbox())


async def run(root: Path, tool: str, **arguments: Any) -> ToolOutcome:
    return await execute(root, prepare(root, tool, **arguments))


def failure(outcome: ToolOutcome) -> str:
    assert outcome.status == "error", outcome
    assert outcome.reason is not None
    return outcome.reason


# --------------------------------------------------------------------------- paths


def test_paths_inside_the_workspace_resolve(repo: Path) -> None:
    real = Path(os.path.realpath(repo))
    assert resolve_in_workspace(repo, "src/app.py") == real / "src" / "app.py"
    assert resolve_in_workspace(repo, str(real / "src" / "app.py")) == real / "src" / "app.py"
    assert resolve_in_workspace(repo, "src/../README.md") == real / "README.md"
    assert resolve_in_workspace(repo, "not/yet/there.txt") == real / "not" / "yet" / "there.txt"
    assert relative_display(repo, real / "src" / "app.py") == "src/app.py"
    assert relative_display(repo, real) == "."


@pytest.mark.parametrize("path", ["../outside.txt", "src/../../outside.txt", "/etc/passwd"])
def test_paths_outside_the_workspace_are_refused(repo: Path, path: str) -> None:
    with pytest.raises(PathOutsideWorkspace) as refused:
        resolve_in_workspace(repo, path)
    assert path in str(refused.value)
    assert str(os.path.realpath(repo)) in str(refused.value)


def test_a_symlink_pointing_outside_is_refused(repo: Path, tmp_path: Path) -> None:
    (tmp_path / "secret.txt").write_text("outside\n")
    (repo / "innocent.txt").symlink_to(tmp_path / "secret.txt")
    (repo / "linked_dir").symlink_to(tmp_path)

    with pytest.raises(PathOutsideWorkspace):
        resolve_in_workspace(repo, "innocent.txt")
    with pytest.raises(PathOutsideWorkspace):
        resolve_in_workspace(repo, "linked_dir/secret.txt")


async def test_every_tool_refuses_paths_outside(repo: Path, tmp_path: Path) -> None:
    (tmp_path / "outside.txt").write_text("do not touch\n")
    (repo / "link.txt").symlink_to(tmp_path / "outside.txt")
    patch = "--- a/../outside.txt\n+++ b/../outside.txt\n@@ -1 +1 @@\n-do not touch\n+touched\n"
    attempts: list[tuple[str, dict[str, Any]]] = [
        ("read", {"path": "../outside.txt"}),
        ("read", {"path": str(tmp_path / "outside.txt")}),
        ("grep", {"pattern": "touch", "path": ".."}),
        ("glob", {"pattern": "*.txt", "path": str(tmp_path)}),
        ("edit", {"path": "link.txt", "old_string": "do not", "new_string": "please"}),
        ("write", {"path": "../outside.txt", "content": "touched\n"}),
        ("apply_patch", {"patch": patch}),
    ]
    for tool, arguments in attempts:
        prepared = prepare(repo, tool, **arguments)
        assert prepared.error is not None and "outside the workspace" in prepared.error, tool
        assert prepared.preview.kind == "info"
        assert failure(await execute(repo, prepared)) == prepared.error
    assert (tmp_path / "outside.txt").read_text() == "do not touch\n"


# --------------------------------------------------------------------------- read


async def test_read_numbers_lines(repo: Path) -> None:
    outcome = await run(repo, "read", path="src/app.py")

    assert outcome.status == "ok"
    assert outcome.content.splitlines()[:2] == ["1\tdef total(items):", "2\t    return 1"]
    assert "more lines" not in outcome.content


async def test_read_pages_with_offset_and_limit(repo: Path) -> None:
    outcome = await run(repo, "read", path="src/app.py", offset=2, limit=2)

    assert outcome.content.splitlines() == [
        "2\t    return 1",
        "3\t",
        "(3 more lines not shown; continue with offset=4)",
    ]


async def test_read_stops_at_two_thousand_lines_by_default(repo: Path) -> None:
    (repo / "long.txt").write_text("".join(f"line {n}\n" for n in range(1, 2501)))

    lines = (await run(repo, "read", path="long.txt")).content.splitlines()

    assert lines[1999] == "2000\tline 2000"
    assert lines[-1] == "(500 more lines not shown; continue with offset=2001)"


async def test_read_cuts_very_long_lines(repo: Path) -> None:
    (repo / "minified.js").write_text("x" * 5000 + "\nshort\n")

    first, second = (await run(repo, "read", path="minified.js")).content.splitlines()

    assert first.startswith("1\t" + "x" * 2000)
    assert first.endswith("[line cut: 3000 more characters; grep for what you need in it]")
    assert second == "2\tshort"


async def test_read_refuses_binary_files(repo: Path) -> None:
    (repo / "image.png").write_bytes(b"\x89PNG\r\n\x1a\n\x00\x00\x00\rIHDR")

    assert "binary" in failure(await run(repo, "read", path="image.png"))


async def test_read_of_a_missing_file_suggests_close_names(repo: Path) -> None:
    reason = failure(await run(repo, "read", path="src/apps.py"))

    assert "file not found: src/apps.py" in reason
    assert "src/app.py" in reason


async def test_read_of_a_folder_and_of_an_empty_file(repo: Path) -> None:
    assert "folder" in failure(await run(repo, "read", path="src"))
    (repo / "empty.txt").write_text("")
    assert (await run(repo, "read", path="empty.txt")).content == "(empty.txt is empty)"
    past = await run(repo, "read", path="README.md", offset=50)
    assert past.status == "ok" and "offset 50 is past the end" in past.content


# --------------------------------------------------------------------------- glob


async def test_glob_lists_matching_files_newest_first_respecting_gitignore(repo: Path) -> None:
    (repo / "build").mkdir()
    (repo / "build" / "generated.py").write_text("x = 1\n")
    now = time.time()
    os.utime(repo / "src" / "app.py", (now - 100, now - 100))
    os.utime(repo / "src" / "util.py", (now, now))

    outcome = await run(repo, "glob", pattern="*.py")

    assert outcome.content.splitlines() == ["src/util.py", "src/app.py"]


async def test_glob_within_a_folder(repo: Path) -> None:
    (repo / "docs" / "guide").mkdir(parents=True)
    (repo / "docs" / "guide" / "intro.md").write_text("hi\n")

    within = await run(repo, "glob", pattern="guide/*.md", path="docs")
    nothing = await run(repo, "glob", pattern="*.rs")

    assert within.content == "docs/guide/intro.md"
    assert "folder docs/none was not found" in failure(
        await run(repo, "glob", pattern="*", path="docs/none")
    )
    assert nothing.status == "ok" and nothing.content == 'no files match "*.rs"'


async def test_glob_caps_results_with_a_note(repo: Path) -> None:
    many = repo / "many"
    many.mkdir()
    for n in range(1005):
        (many / f"f{n}.txt").write_text("")

    lines = (await run(repo, "glob", pattern="*.txt")).content.splitlines()

    assert len(lines) == 1001
    assert lines[-1] == "(5 more files not shown; use a narrower pattern or path)"


# --------------------------------------------------------------------------- grep


async def test_grep_finds_lines_with_path_and_number(repo: Path) -> None:
    outcome = await run(repo, "grep", pattern="def \\w+")

    assert sorted(outcome.content.splitlines()) == [
        "src/app.py:1:def total(items):",
        "src/app.py:5:def main():",
        "src/util.py:2:def helper():",
    ]


async def test_grep_options(repo: Path) -> None:
    ignoring_case = await run(repo, "grep", pattern="todo", ignore_case=True)
    case_sensitive = await run(repo, "grep", pattern="todo")
    only_markdown = await run(repo, "grep", pattern="Demo|def", glob="*.md")
    in_folder = await run(repo, "grep", pattern="def", path="src/util.py")
    with_context = await run(repo, "grep", pattern="return 1", context=1)

    assert ignoring_case.content == "src/util.py:1:# TODO: tidy"
    assert case_sensitive.status == "ok" and case_sensitive.content == "no matches for 'todo'"
    assert only_markdown.content == "README.md:1:# Demo"
    assert in_folder.content == "src/util.py:2:def helper():"
    assert with_context.content.splitlines() == [
        "src/app.py-1-def total(items):",
        "src/app.py:2:    return 1",
        "src/app.py-3-",
    ]


async def test_grep_respects_gitignore_and_skips_secrets(repo: Path, tmp_path: Path) -> None:
    (repo / "debug.log").write_text("needle in a log\n")
    (repo / ".env").write_text("API_KEY=needle\n")
    (repo / "config").mkdir()
    (repo / "config" / "server.pem").write_text("needle pem\n")
    (tmp_path / "far.txt").write_text("needle far away\n")
    (repo / "far.txt").symlink_to(tmp_path / "far.txt")
    (repo / ".github").mkdir()
    (repo / ".github" / "ci.yml").write_text("run: needle\n")

    outcome = await run(repo, "grep", pattern="needle")

    assert outcome.content == ".github/ci.yml:1:run: needle"


async def test_grep_refuses_to_search_a_secret_file_by_name(repo: Path) -> None:
    (repo / ".env").write_text("API_KEY=needle\n")

    reason = failure(await run(repo, "grep", pattern="needle", path=".env"))

    assert "secrets" in reason and "needle" not in reason


async def test_grep_caps_matches_with_a_note(repo: Path) -> None:
    (repo / "big.txt").write_text("match\n" * 500)

    capped = (await run(repo, "grep", pattern="match", max_results=10)).content.splitlines()
    default = (await run(repo, "grep", pattern="match")).content.splitlines()

    assert capped[:10] == [f"big.txt:{n}:match" for n in range(1, 11)]
    assert capped[10].startswith("(showing the first 10 matching lines; 490 more in 1 file")
    assert len(capped) == 11
    assert len(default) == 201


async def test_grep_reports_an_invalid_regex(repo: Path) -> None:
    reason = failure(await run(repo, "grep", pattern="(unclosed"))

    assert "regex parse error" in reason


async def test_grep_of_a_missing_path(repo: Path) -> None:
    outcome = await run(repo, "grep", pattern="x", path="nowhere")

    assert "path not found: nowhere" in failure(outcome)


# --------------------------------------------------------------------------- edit


async def test_edit_previews_the_diff_then_writes(repo: Path) -> None:
    prepared = prepare(
        repo,
        "edit",
        path="src/app.py",
        old_string="return 1",
        new_string="return sum(items)",
    )

    assert prepared.error is None
    assert prepared.preview.title == "Edit src/app.py"
    assert prepared.preview.kind == "diff" and prepared.preview.language == "diff"
    assert "--- a/src/app.py\n+++ b/src/app.py\n" in prepared.preview.body
    assert "-    return 1\n+    return sum(items)\n" in prepared.preview.body
    assert "return 1" in (repo / "src" / "app.py").read_text()  # preparing writes nothing

    outcome = await execute(repo, prepared)

    assert outcome.status == "ok" and outcome.changed_files == ("src/app.py",)
    assert "edited src/app.py" in outcome.content
    assert (repo / "src" / "app.py").read_text().splitlines()[1] == "    return sum(items)"


async def test_edit_must_match_exactly_once(repo: Path) -> None:
    (repo / "dup.py").write_text("x = 1\ny = 2\nx = 1\n")

    missing = prepare(repo, "edit", path="dup.py", old_string="z = 3", new_string="z = 4")
    several = prepare(repo, "edit", path="dup.py", old_string="x = 1", new_string="x = 9")
    same = prepare(repo, "edit", path="dup.py", old_string="y = 2", new_string="y = 2")
    no_file = prepare(repo, "edit", path="nope.py", old_string="a", new_string="b")

    assert missing.error is not None and "was not found in dup.py" in missing.error
    assert several.error is not None and "occurs 2 times" in several.error
    assert "lines 1, 3" in several.error
    assert same.error is not None and "identical" in same.error
    assert no_file.error is not None and "file not found: nope.py" in no_file.error
    assert (repo / "dup.py").read_text() == "x = 1\ny = 2\nx = 1\n"


async def test_edit_replace_all(repo: Path) -> None:
    (repo / "dup.py").write_text("x = 1\ny = 2\nx = 1\n")

    outcome = await run(
        repo, "edit", path="dup.py", old_string="x = 1", new_string="x = 9", replace_all=True
    )

    assert outcome.status == "ok"
    assert (repo / "dup.py").read_text() == "x = 9\ny = 2\nx = 9\n"


async def test_edit_keeps_windows_line_endings(repo: Path) -> None:
    (repo / "dos.txt").write_bytes(b"one\r\ntwo\r\nthree\r\n")

    outcome = await run(repo, "edit", path="dos.txt", old_string="one\ntwo", new_string="1\n2")

    assert outcome.status == "ok"
    assert (repo / "dos.txt").read_bytes() == b"1\r\n2\r\nthree\r\n"


async def test_edit_keeps_the_file_mode(repo: Path) -> None:
    script = repo / "run.sh"
    script.write_text("#!/bin/sh\necho old\n")
    script.chmod(0o755)

    await run(repo, "edit", path="run.sh", old_string="old", new_string="new")

    assert stat.S_IMODE(script.stat().st_mode) == 0o755
    assert script.read_text() == "#!/bin/sh\necho new\n"


async def test_edit_refuses_binary_and_non_utf8_files(repo: Path) -> None:
    (repo / "blob.bin").write_bytes(b"abc\x00def")
    (repo / "latin.txt").write_bytes("café\n".encode("latin-1"))

    binary = prepare(repo, "edit", path="blob.bin", old_string="abc", new_string="xyz")
    latin = prepare(repo, "edit", path="latin.txt", old_string="caf", new_string="tea")

    assert binary.error is not None and "binary" in binary.error
    assert latin.error is not None and "not UTF-8" in latin.error


# --------------------------------------------------------------------------- write


async def test_write_creates_a_file_in_new_folders(repo: Path) -> None:
    prepared = prepare(repo, "write", path="docs/new/guide.md", content="# Guide\n")

    assert prepared.preview.title == "Write docs/new/guide.md"
    assert prepared.changes == (FileChange("docs/new/guide.md", None, "# Guide\n"),)
    assert prepared.preview.body.startswith("--- /dev/null\n+++ b/docs/new/guide.md\n")

    outcome = await execute(repo, prepared)

    assert outcome.content == "Done: created docs/new/guide.md."
    assert (repo / "docs" / "new" / "guide.md").read_text() == "# Guide\n"


async def test_write_replaces_content(repo: Path) -> None:
    prepared = prepare(repo, "write", path="README.md", content="# New\n")

    assert prepared.changes[0].before == "# Demo\n\nA small repository for tests.\n"
    assert (await execute(repo, prepared)).status == "ok"
    assert (repo / "README.md").read_text() == "# New\n"
    same = prepare(repo, "write", path="README.md", content="# New\n")
    assert same.error is not None and "already has exactly this content" in same.error


# --------------------------------------------------------------------------- apply_patch

TWO_FILE_PATCH = "".join(
    line + "\n"
    for line in [
        "--- a/src/app.py",
        "+++ b/src/app.py",
        "@@ -1,2 +1,2 @@",
        " def total(items):",
        "-    return 1",
        "+    return sum(items)",
        "--- a/README.md",
        "+++ b/README.md",
        "@@ -1,3 +1,3 @@",
        " # Demo",
        " ",
        "-A small repository for tests.",
        "+A small repository for patch tests.",
    ]
)


async def test_patch_of_two_files(repo: Path) -> None:
    prepared = prepare(repo, "apply_patch", patch=TWO_FILE_PATCH)

    assert prepared.error is None, prepared.error
    assert prepared.preview.title == "Patch 2 files"
    assert "+++ b/README.md" in prepared.preview.body

    outcome = await execute(repo, prepared)

    assert outcome.changed_files == ("src/app.py", "README.md")
    assert "return sum(items)" in (repo / "src" / "app.py").read_text()
    assert "patch tests" in (repo / "README.md").read_text()


async def test_patch_creates_and_deletes_files(repo: Path) -> None:
    patch = (
        "--- /dev/null\n+++ b/src/new.py\n@@ -0,0 +1,2 @@\n+first = 1\n+second = 2\n"
        "--- a/src/util.py\n+++ /dev/null\n@@ -1,3 +0,0 @@\n"
        "-# TODO: tidy\n-def helper():\n-    return 'helper'\n"
    )

    outcome = await run(repo, "apply_patch", patch=patch)

    assert outcome.status == "ok", outcome
    assert outcome.content == "Done: created src/new.py; deleted src/util.py."
    assert (repo / "src" / "new.py").read_text() == "first = 1\nsecond = 2\n"
    assert not (repo / "src" / "util.py").exists()


async def test_patch_with_a_wrong_line_number_applies_where_it_uniquely_matches(
    repo: Path,
) -> None:
    patch = (
        "--- a/src/app.py\n+++ b/src/app.py\n@@ -40,2 +40,2 @@\n def main():\n"
        "-    print(total([]))\n+    print(total([1, 2]))\n"
    )

    outcome = await run(repo, "apply_patch", patch=patch)

    assert outcome.status == "ok", outcome
    assert (repo / "src" / "app.py").read_text().endswith("    print(total([1, 2]))\n")


async def test_patch_hunks_that_do_not_match_or_are_ambiguous_are_errors(repo: Path) -> None:
    (repo / "twice.txt").write_text("a\nsame\nb\nsame\nc\n")
    missing = "--- a/src/app.py\n+++ b/src/app.py\n@@ -1,1 +1,1 @@\n-def nothing():\n+def x():\n"
    ambiguous = "--- a/twice.txt\n+++ b/twice.txt\n@@ -7,1 +7,1 @@\n-same\n+other\n"

    missing_call = prepare(repo, "apply_patch", patch=missing)
    ambiguous_call = prepare(repo, "apply_patch", patch=ambiguous)

    assert missing_call.error is not None
    assert "hunk 1 (@@ -1,1 @@) of src/app.py does not match" in missing_call.error
    assert ambiguous_call.error is not None
    assert "matches at lines 2, 4" in ambiguous_call.error


async def test_patch_errors_for_bad_input(repo: Path) -> None:
    cases = {
        "not a diff at all": "no file changes found",
        "--- a/README.md\n+++ b/README.md\n@@ -1 +1 @@\n-# Nope\n+# X\n": "does not match the file",
        "--- /dev/null\n+++ b/README.md\n@@ -0,0 +1 @@\n+hi\n": "already exists",
        "--- a/gone.txt\n+++ b/gone.txt\n@@ -1 +1 @@\n-a\n+b\n": "file not found: gone.txt",
        "--- a/README.md\n+++ /dev/null\n@@ -1 +0,0 @@\n-# Demo\n": "not the whole file",
        "--- a/README.md\n+++ b/src/util.py\n@@ -1 +1 @@\n-# Demo\n+# D\n": "already exists",
    }
    for patch, expected in cases.items():
        prepared = prepare(repo, "apply_patch", patch=patch)
        assert prepared.error is not None and expected in prepared.error, (patch, prepared.error)
    assert (repo / "README.md").read_text().startswith("# Demo\n")


async def test_patch_handles_missing_newline_at_end_of_file(repo: Path) -> None:
    (repo / "bare.txt").write_text("alpha\nbeta")
    patch = (
        "--- a/bare.txt\n+++ b/bare.txt\n@@ -1,2 +1,3 @@\n alpha\n-beta\n"
        "\\ No newline at end of file\n+beta\n+gamma\n\\ No newline at end of file\n"
    )

    outcome = await run(repo, "apply_patch", patch=patch)

    assert outcome.status == "ok", outcome
    assert (repo / "bare.txt").read_text() == "alpha\nbeta\ngamma"


def test_render_diff_marks_a_missing_final_newline() -> None:
    diff = render_diff([FileChange("a.txt", "one\ntwo", "one\ntwo\n")])

    assert diff == (
        "--- a/a.txt\n+++ b/a.txt\n@@ -1,2 +1,2 @@\n one\n-two\n"
        "\\ No newline at end of file\n+two\n"
    )


# --------------------------------------------------------------------------- stale changes


async def test_an_edit_is_not_applied_when_the_file_changed_since_the_preview(
    repo: Path,
) -> None:
    prepared = prepare(
        repo, "edit", path="src/app.py", old_string="return 1", new_string="return 2"
    )
    (repo / "src" / "app.py").write_text("someone else's version\n")

    reason = failure(await execute(repo, prepared))

    assert "src/app.py changed since the edit was previewed" in reason
    assert "nothing was applied" in reason
    assert (repo / "src" / "app.py").read_text() == "someone else's version\n"


async def test_a_multi_file_patch_with_one_stale_file_leaves_both_untouched(repo: Path) -> None:
    app_before = (repo / "src" / "app.py").read_text()
    prepared = prepare(repo, "apply_patch", patch=TWO_FILE_PATCH)
    (repo / "README.md").write_text("# Demo\n\nEdited by hand meanwhile.\n")

    reason = failure(await execute(repo, prepared))

    assert "README.md changed since the edit was previewed" in reason
    assert (repo / "src" / "app.py").read_text() == app_before
    assert (repo / "README.md").read_text() == "# Demo\n\nEdited by hand meanwhile.\n"


async def test_creating_a_file_that_appeared_meanwhile_is_stale(repo: Path) -> None:
    prepared = prepare(repo, "write", path="new.txt", content="mine\n")
    (repo / "new.txt").write_text("theirs\n")

    with pytest.raises(StaleChange, match="new.txt was created"):
        apply_changes(repo, prepared.changes)
    assert "changed since the edit was previewed" in failure(await execute(repo, prepared))
    assert (repo / "new.txt").read_text() == "theirs\n"


def test_a_failure_half_way_restores_the_files_already_written(repo: Path) -> None:
    readme_before = (repo / "README.md").read_text()
    changes = [
        FileChange("README.md", readme_before, "# Changed\n"),
        FileChange("src/new-folder/new.txt", None, "new\n"),
        FileChange("src/app.py/impossible.txt", None, "cannot exist under a file\n"),
    ]

    with pytest.raises(OSError):
        apply_changes(repo, changes)

    assert (repo / "README.md").read_text() == readme_before
    assert not (repo / "src" / "new-folder").exists()
    assert sorted(p.name for p in repo.iterdir()) == [".git", ".gitignore", "README.md", "src"]


# --------------------------------------------------------------------------- shell


async def test_shell_reports_exit_code_and_labelled_output(repo: Path) -> None:
    ok = await run(repo, "shell", command="pwd; echo oops >&2")
    failed = await run(repo, "shell", command="echo partial; exit 3")

    assert ok.status == "ok"
    assert ok.content == f"exit code: 0\nstdout:\n{_real(repo)}\nstderr:\noops"
    assert failed.status == "error"
    assert failed.reason == "the command exited with code 3"
    assert failed.content == "exit code: 3\nstdout:\npartial"


async def test_shell_has_no_stdin(repo: Path) -> None:
    outcome = await run(repo, "shell", command="cat; echo done", timeout_s=5)

    assert outcome.content == "exit code: 0\nstdout:\ndone"


async def test_shell_preview_is_the_exact_command(repo: Path) -> None:
    prepared = prepare(repo, "shell", command="pytest -q 'tests/a b'")

    assert prepared.preview.kind == "command" and prepared.preview.language == "bash"
    assert prepared.preview.body == "pytest -q 'tests/a b'"


def _real(path: Path) -> str:
    return os.path.realpath(path)


async def _dies(pid: int) -> None:
    """The process ends soon (a SIGKILLed process may take a moment on a loaded machine)."""
    await until(None, lambda: _dead(pid), 5, f"process {pid} is still alive")


def _dead(pid: int) -> bool:
    try:
        with open(f"/proc/{pid}/stat") as status:
            return status.read().rsplit(")", 1)[1].split()[0] == "Z"
    except FileNotFoundError:
        return True


async def test_shell_timeout_kills_the_whole_process_group(repo: Path) -> None:
    started = time.monotonic()
    outcome = await run(
        repo,
        "shell",
        command="sleep 30 & echo $! > bg.pid; echo started; sleep 30",
        timeout_s=1,
    )

    assert time.monotonic() - started < 5
    assert outcome.status == "error"
    assert outcome.reason == "the command timed out after 1 s and was killed"
    assert outcome.content.startswith("timed out after 1 s")
    assert "started" in outcome.content
    await _dies(int((repo / "bg.pid").read_text()))


async def test_shell_timeout_kills_processes_that_ignore_sigterm(
    repo: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(shell, "KILL_GRACE_S", 0.3)
    outcome = await run(
        repo,
        "shell",
        command="trap '' TERM; sleep 30 & echo $! > bg.pid; sleep 30",
        timeout_s=1,
    )

    assert outcome.status == "error" and "timed out" in outcome.content
    await _dies(int((repo / "bg.pid").read_text()))


async def test_background_processes_holding_the_output_are_stopped(repo: Path) -> None:
    started = time.monotonic()
    outcome = await run(repo, "shell", command="echo hi; sleep 30 & echo $! > bg.pid")

    assert time.monotonic() - started < 5
    assert outcome.status == "ok"
    assert "background processes that kept the output open were stopped" in outcome.content
    await _dies(int((repo / "bg.pid").read_text()))


async def test_background_processes_with_redirected_output_keep_running(repo: Path) -> None:
    outcome = await run(repo, "shell", command="sleep 30 > /dev/null 2>&1 & echo $!")
    pid = int(outcome.content.splitlines()[-1])
    try:
        assert outcome.content == f"exit code: 0\nstdout:\n{pid}"
        assert not _dead(pid)
    finally:
        os.kill(pid, signal.SIGKILL)


async def test_cancelling_a_running_command_kills_its_process_group_and_keeps_its_output(
    repo: Path,
) -> None:
    command = "echo begun; sleep 30 & echo $! > bg.pid; sleep 30"
    prepared = prepare(repo, "shell", command=command)
    task = asyncio.create_task(execute(repo, prepared))
    # until the command has started its background child
    await until(None, lambda: (repo / "bg.pid").exists() and bool((repo / "bg.pid").read_text()))

    task.cancel()
    outcome = await task

    await _dies(int((repo / "bg.pid").read_text()))
    assert outcome.status == "error"
    assert outcome.reason is not None and outcome.reason.startswith("killed after ")
    assert outcome.content.startswith("killed after ") and outcome.content.endswith("begun")


async def test_cancelling_a_command_while_it_starts_kills_it_and_reports_the_kill(
    repo: Path,
) -> None:
    command = "echo $$ > shell.pid; echo begun; sleep 30"
    task = asyncio.create_task(shell.run_shell(repo, command, None, unsandboxed(command)))
    await asyncio.sleep(0)  # the task runs until it waits for the start of the process

    task.cancel()
    result = await task

    assert result.killed_after_s is not None and result.exit_code is None
    assert result.as_text().startswith("killed after ")
    pid_file = repo / "shell.pid"
    assert not pid_file.exists() or not pid_file.read_text() or _dead(int(pid_file.read_text()))


async def test_shell_output_is_capped_keeping_start_and_end(repo: Path) -> None:
    outcome = await run(
        repo,
        "shell",
        command="echo START; head -c 200000 /dev/zero | tr '\\0' x; echo; echo END",
    )

    assert outcome.status == "ok"
    assert len(outcome.content) < 30_200
    assert "START" in outcome.content and outcome.content.rstrip().endswith("END")
    assert "bytes of output cut" in outcome.content


async def test_shell_cap_is_shared_between_stdout_and_stderr(repo: Path) -> None:
    outcome = await run(
        repo,
        "shell",
        command="head -c 100000 /dev/zero | tr '\\0' o; echo small >&2",
    )

    assert len(outcome.content) < 30_200
    assert outcome.content.endswith("stderr:\nsmall")


# --------------------------------------------------------------------------- registry


async def test_unknown_tools_and_bad_arguments_are_errors_not_exceptions(repo: Path) -> None:
    unknown = prepare(repo, "teleport", where="mars")
    bad = prepare(repo, "read", path="README.md", offset=0)
    extra = prepare(repo, "grep", pattern="x", colour=True)

    assert unknown.error is not None and "unknown tool 'teleport'" in unknown.error
    assert unknown.preview.kind == "info" and "teleport" in unknown.preview.body
    assert bad.error is not None and "offset" in bad.error
    assert extra.error is not None and "colour" in extra.error
    assert failure(await execute(repo, unknown)) == unknown.error


def test_read_only_previews_are_one_line_summaries(repo: Path) -> None:
    grep = prepare(repo, "grep", pattern="TODO", path="src", glob="*.py")
    read = prepare(repo, "read", path="./src/../README.md", offset=3, limit=10)
    glob = prepare(repo, "glob", pattern="**/*.md")

    assert grep.preview.body == 'grep "TODO" in src (files *.py)'
    assert read.preview.title == "Read README.md"
    assert read.preview.body == "read README.md (lines 3–12)"
    assert glob.preview.body == 'glob "**/*.md"'
    assert {grep.preview.kind, read.preview.kind, glob.preview.kind} == {"info"}


async def test_a_patch_that_renames_a_file_moves_it_on_disk(repo: Path) -> None:
    patch = "--- a/README.md\n+++ b/docs/README.md\n@@ -1 +1 @@\n-# Demo\n+# Demo docs\n"

    outcome = await run(repo, "apply_patch", patch=patch)

    assert outcome.status == "ok", outcome
    assert not (repo / "README.md").exists()
    assert (repo / "docs" / "README.md").read_text().startswith("# Demo docs\n")


async def test_a_renamed_file_keeps_its_mode_and_undo_puts_it_back(repo: Path) -> None:
    script = repo / "run.sh"
    script.write_text("#!/bin/sh\necho hi\n")
    script.chmod(0o755)
    patch = "--- a/run.sh\n+++ b/bin/run.sh\n@@ -1,2 +1,2 @@\n #!/bin/sh\n-echo hi\n+echo hello\n"
    prepared = prepare(repo, "apply_patch", patch=patch)

    outcome = await execute(repo, prepared)

    assert outcome.status == "ok", outcome
    assert stat.S_IMODE((repo / "bin" / "run.sh").stat().st_mode) == 0o755
    stack = UndoStack(repo)
    stack.record("c", "apply_patch", prepared.changes)
    stack.undo_last()
    assert not (repo / "bin" / "run.sh").exists()
    assert stat.S_IMODE(script.stat().st_mode) == 0o755
    assert script.read_text() == "#!/bin/sh\necho hi\n"
