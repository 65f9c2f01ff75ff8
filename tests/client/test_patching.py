"""apply_patch on the diffs models really write: every perturbation, and the refusals."""

from __future__ import annotations

from pathlib import Path

import pytest
from cairn_client.cli import app
from cairn_client.patching import PatchError, apply_patch, patch_paths
from typer.testing import CliRunner

APP = "".join(
    f"{line}\n"
    for line in [
        "import sys",
        "",
        "",
        "def total(items):",
        "    result = 0",
        "    for item in items:",
        "        result += item",
        "    return result",
        "",
        "",
        "def main():",
        "    print(total([1, 2]))",
        "    return 0",
    ]
)
AFTER = APP.replace("        result += item\n", "        result += item * 2\n")
CLEAN = (
    "--- a/app.py\n+++ b/app.py\n@@ -5,4 +5,4 @@\n     result = 0\n     for item in items:\n"
    "-        result += item\n+        result += item * 2\n     return result\n"
)


def body(header: str = "@@ -5,4 +5,4 @@", names: tuple[str, str] = ("a/app.py", "b/app.py")) -> str:
    return CLEAN.replace(
        "--- a/app.py\n+++ b/app.py\n@@ -5,4 +5,4 @@",
        "\n".join([f"--- {names[0]}", f"+++ {names[1]}", header]),
    )


@pytest.mark.parametrize(
    "patch",
    [
        CLEAN,
        body("@@ -40,4 +40,4 @@"),  # wrong line numbers
        body("@@ -5,9 +5,2 @@"),  # wrong counts
        body("@@ @@"),
        body("@@ ... @@"),
        body(names=("app.py", "app.py")),  # no a/ b/ prefixes
        CLEAN.replace("     for item in items:\n", ""),  # a dropped context line
        CLEAN.replace("     return result\n", "     return result\n \n"),  # extra at the end
        CLEAN.replace("     result = 0\n", "     result = 0\n     result = 0\n"),  # extra
        CLEAN.replace("     result = 0\n", "     result = 0   \n"),  # trailing whitespace
        CLEAN.replace("\n     ", "\n ").replace("\n-    ", "\n-").replace("\n+    ", "\n+"),
        CLEAN.removesuffix("\n"),  # the patch has no final newline
        CLEAN.replace("\n", "\r\n"),  # a CRLF patch
    ],
    ids=[
        "clean",
        "wrong-numbers",
        "wrong-counts",
        "bare-header",
        "dots-header",
        "no-prefixes",
        "dropped-context",
        "extra-trailing-context",
        "extra-context",
        "trailing-whitespace",
        "indentation-drift",
        "no-final-newline",
        "crlf-patch",
    ],
)
def test_model_style_diffs_apply_exactly(patch: str) -> None:
    assert apply_patch(patch, {"app.py": APP}) == {"app.py": AFTER}


def test_indentation_drift_reindents_the_added_lines() -> None:
    patch = (
        "--- a/app.py\n+++ b/app.py\n@@ @@\n result = 0\n for item in items:\n"
        "-    result += item\n+    if item:\n+        result += item\n+\n return result\n"
    )
    result = apply_patch(patch, {"app.py": APP})["app.py"]
    assert result is not None
    assert "    for item in items:\n        if item:\n            result += item\n\n" in result


def test_hunks_out_of_order_and_several_files() -> None:
    other = "one\ntwo\nthree\nfour\nfive\nsix\nseven\neight\nnine\nten\n"
    patch = (
        "--- a/notes.txt\n+++ b/notes.txt\n@@ -8,3 +8,3 @@\n eight\n-nine\n+NINE\n ten\n"
        "@@ -1,3 +1,3 @@\n one\n-two\n+TWO\n three\n" + CLEAN
    )
    result = apply_patch(patch, {"app.py": APP, "notes.txt": other})
    assert result["notes.txt"] == other.replace("two", "TWO").replace("nine", "NINE")
    assert result["app.py"] == AFTER


def test_ambiguous_and_absent_hunks_are_refused_with_a_reason_each() -> None:
    twice = "a\nsame\nb\nc\nd\ne\nf\nsame\ng\n"
    patch = (
        "--- a/twice.txt\n+++ b/twice.txt\n@@ -4,1 +4,1 @@\n-same\n+other\n"
        "--- a/app.py\n+++ b/app.py\n@@ -1,2 +1,2 @@\n import sys\n-import os\n+import re\n"
    )
    with pytest.raises(PatchError) as refused:
        apply_patch(patch, {"twice.txt": twice, "app.py": APP})
    problems = refused.value.problems
    assert [(p.path, p.hunk) for p in problems] == [("twice.txt", 1), ("app.py", 1)]
    assert "matches at lines 2, 8" in problems[0].why and "add context" in problems[0].why
    assert "'import os' where the file has ''" in problems[1].why


def test_identical_hunks_for_as_many_identical_places_change_each_place() -> None:
    job = "  - name: setup\n    uses: setup@v1\n    with:\n      cache: pip\n"
    text = "jobs:\n" + job + "  - name: lint\n" + job
    hunk = "@@ @@\n   - name: setup\n-    uses: setup@v1\n+    uses: setup@v2\n     with:\n"
    twice = "--- a/ci.yml\n+++ b/ci.yml\n" + hunk + hunk
    assert apply_patch(twice, {"ci.yml": text}) == {"ci.yml": text.replace("@v1", "@v2")}
    with pytest.raises(PatchError, match="matches at lines 2, 7"):
        apply_patch("--- a/ci.yml\n+++ b/ci.yml\n" + hunk, {"ci.yml": text})
    other = hunk.replace("@v2", "@v3")
    with pytest.raises(PatchError, match="matches at lines 2, 7"):
        apply_patch(twice.replace(hunk + hunk, hunk + other), {"ci.yml": text})


def test_a_line_number_picks_only_a_clearly_nearest_match() -> None:
    text = "".join(f"x{n}\n" if n not in (5, 60) else "same\n" for n in range(100))
    patch = "--- a/f\n+++ b/f\n@@ -{} +{} @@\n-same\n+other\n"
    assert apply_patch(patch.format(60, 60), {"f": text})["f"] == text.replace(
        "x59\nsame", "x59\nother"
    )
    with pytest.raises(PatchError, match="does not clearly pick one"):
        apply_patch(patch.format(33, 33), {"f": text})


def test_a_refusal_points_at_the_place_most_of_the_hunk_matches() -> None:
    text = (
        "def a(items):\n    result = 0\n    for item in items:\n        result += item\n"
        "    return result\n\n\ndef b(values):\n    result = 0\n    for value in values:\n"
        "        result -= value\n        log(value)\n    return result\n"
    )
    patch = (
        "--- a/f.py\n+++ b/f.py\n@@ -9,5 +9,5 @@\n     result = 0\n     for value in vals:\n"
        "-        result -= value\n+        result -= value * 2\n         log(value)\n"
        "     return result\n"
    )
    with pytest.raises(PatchError) as refused:
        apply_patch(patch, {"f.py": text})
    why = refused.value.problems[0].why
    assert "closest at line 9, where 4 of its 5 lines match" in why
    assert "'    for value in vals:' where the file has '    for value in values:' (line 10)" in why


def test_one_bad_file_refuses_the_whole_patch() -> None:
    patch = CLEAN + "--- a/gone.txt\n+++ b/gone.txt\n@@ -1 +1 @@\n-a\n+b\n"
    with pytest.raises(PatchError, match="file not found: gone.txt"):
        apply_patch(patch, {"app.py": APP})


def test_overlapping_hunks_are_refused() -> None:
    patch = (
        CLEAN + "@@ -6,2 +6,2 @@\n     for item in items:\n-        result += item\n+        x\n"
    )
    with pytest.raises(PatchError, match="overlaps hunk 1"):
        apply_patch(patch, {"app.py": APP})


def test_a_hunk_without_context_goes_where_its_line_numbers_say() -> None:
    patch = "--- a/app.py\n+++ b/app.py\n@@ -3,0 +4 @@\n+# note\n"
    assert apply_patch(patch, {"app.py": APP}) == {
        "app.py": APP.replace("import sys\n\n\n", "import sys\n\n\n# note\n")
    }
    with pytest.raises(PatchError, match="do not say -N,0"):
        apply_patch(patch.replace("-3,0", "-3"), {"app.py": APP})
    with pytest.raises(PatchError, match="the file has 13 lines"):
        apply_patch(patch.replace("-3,0 +4", "-30,0 +31"), {"app.py": APP})
    with pytest.raises(PatchError, match="the way a new file's patch does"):
        apply_patch(patch.replace("-3,0 +4", "-0,0 +1"), {"app.py": APP})


def test_zero_context_hunks_use_line_numbers_only_when_the_content_confirms_them() -> None:
    text = "".join(f"line {n}\n" if n % 5 else "    pass\n" for n in range(1, 41))
    # `    pass` is on every fifth line: hunk 2's number picks one, hunk 1 confirms the numbers
    patch = (
        "--- a/f\n+++ b/f\n@@ -3 +3 @@\n-line 3\n+LINE 3\n@@ -20 +20 @@\n-    pass\n+    return\n"
    )
    assert apply_patch(patch, {"f": text})["f"] == text.replace("line 3\n", "LINE 3\n").replace(
        "line 19\n    pass\n", "line 19\n    return\n"
    )
    wrong = patch.replace("@@ -3 +3 @@", "@@ -7 +7 @@")  # content says line 3: numbers are off
    with pytest.raises(PatchError) as refused:
        apply_patch(wrong, {"f": text})
    assert [p.hunk for p in refused.value.problems] == [2]
    assert "hunk 1's @@ line says line 7, but its content is at line 3" in str(refused.value)
    shifted = "--- a/f\n+++ b/f\n@@ -9,0 +10 @@\n+# note\n@@ -3 +4 @@\n-line 3\n+LINE 3\n"
    with pytest.raises(PatchError, match="line numbers"):
        apply_patch(shifted, {"f": text})  # new-side numbers that do not add up


def test_a_loosely_matching_hunk_is_placed_only_where_its_line_number_points() -> None:
    text = "# Title\n\n## Removed\n\n* old\n\n\n## Fixed\n\n* bug\n"
    # the model left out the blank line between `## Removed` and `* old`: two anchor lines only
    patch = "--- a/f.md\n+++ b/f.md\n@@ -3,4 +3,6 @@\n ## Removed\n * old\n+* older\n \n"
    assert apply_patch(patch, {"f.md": text})["f.md"] == text.replace("* old\n", "* old\n* older\n")
    with pytest.raises(PatchError, match="too few"):
        apply_patch(patch.replace("@@ -3,4 +3,6 @@", "@@ @@"), {"f.md": text})


def test_whitespace_only_added_lines_keep_their_whitespace() -> None:
    patch = CLEAN.replace("+        result += item * 2\n", "+        result += item * 2\n+    \n")
    result = apply_patch(patch, {"app.py": APP})["app.py"]
    assert result == AFTER.replace("item * 2\n", "item * 2\n    \n")


def test_whitespace_only_added_lines_under_reindentation_are_refused() -> None:
    patch = (
        "--- a/app.py\n+++ b/app.py\n@@ @@\n result = 0\n for item in items:\n"
        "-    result += item\n+    result += item * 2\n+  \n return result\n"
    )
    with pytest.raises(PatchError, match="only whitespace"):
        apply_patch(patch, {"app.py": APP})


def test_a_new_line_without_its_plus_is_refused_not_dropped() -> None:
    added = "+        result += item * 2\n"
    indented = CLEAN.replace(added, added + "        log(item)\n")
    with pytest.raises(PatchError) as refused:
        apply_patch(indented, {"app.py": APP})
    why = refused.value.problems[0].why
    assert "'       log(item)'" in why and "prefix it with +" in why

    unindented = CLEAN.replace(added, added + "log(item)\n")
    with pytest.raises(PatchError, match=r"line 8 of the patch, 'log\(item\)', which has no"):
        apply_patch(unindented, {"app.py": APP})


def test_hunks_run_together_without_at_lines_are_cut_where_the_file_has_a_gap() -> None:
    first = " import sys\n+import os\n \n"
    second = " def main():\n-    print(total([1, 2]))\n+    print(total([1, 2, 3]))\n"
    after = APP.replace("import sys\n", "import sys\nimport os\n").replace("2]))", "2, 3]))")
    header = "--- a/app.py\n+++ b/app.py\n"
    assert apply_patch(header + first + second, {"app.py": APP}) == {"app.py": after}
    with pytest.raises(PatchError, match="'import sys'"):  # out of file order: not cut
        apply_patch(header + second + first, {"app.py": APP})
    with pytest.raises(PatchError, match="read as one hunk: start each with @@"):
        apply_patch(header + first + second.replace("main", "run"), {"app.py": APP})


def test_an_elision_line_between_changes_separates_two_hunks() -> None:
    patch = (
        "--- a/app.py\n+++ b/app.py\n import sys\n+import os\n...\n"
        "     result = 0\n     for item in items:\n-        result += item\n"
        "+        result += item * 2\n"
    )
    assert apply_patch(patch, {"app.py": APP}) == {
        "app.py": AFTER.replace("import sys\n", "import sys\nimport os\n")
    }


def test_an_empty_new_file_is_created() -> None:
    patch = "--- /dev/null\n+++ b/pkg/__init__.py\n" + CLEAN
    assert apply_patch(patch, {"app.py": APP}) == {"pkg/__init__.py": "", "app.py": AFTER}


def test_crlf_files_keep_their_line_endings() -> None:
    crlf = APP.replace("\n", "\r\n")
    assert apply_patch(CLEAN, {"app.py": crlf}) == {"app.py": AFTER.replace("\n", "\r\n")}


def test_files_without_a_final_newline() -> None:
    bare = "alpha\nbeta"
    marked = (
        "--- a/f\n+++ b/f\n@@ -1,2 +1,2 @@\n alpha\n-beta\n\\ No newline at end of file\n+BETA\n"
    )
    unmarked = "--- a/f\n+++ b/f\n@@ -1,2 +1,2 @@\n alpha\n-beta\n+BETA\n"
    assert apply_patch(marked, {"f": bare}) == {"f": "alpha\nBETA\n"}
    assert apply_patch(unmarked, {"f": bare}) == {"f": "alpha\nBETA"}


def test_new_and_deleted_files() -> None:
    patch = (
        "--- /dev/null\n+++ b/new.txt\n@@ -0,0 +1,2 @@\n+one\n+two\n"
        "--- a/old.txt\n+++ /dev/null\n@@ -1,2 +0,0 @@\n-gone\n-too\n"
    )
    assert apply_patch(patch, {"old.txt": "gone\ntoo\n"}) == {
        "new.txt": "one\ntwo\n",
        "old.txt": None,
    }
    with pytest.raises(PatchError, match="already exists"):
        apply_patch(patch, {"old.txt": "gone\ntoo\n", "new.txt": "x\n"})


# --------------------------------------------------------------------------- cairn patch apply


def test_cli_applies_checks_and_refuses(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    (tmp_path / "app.py").write_text(APP)
    (tmp_path / "fix.diff").write_text(body("@@ @@"))
    bad = tmp_path / "bad.diff"
    bad.write_text(CLEAN.replace("-        result += item", "-        result += items"))
    monkeypatch.chdir(tmp_path)
    runner = CliRunner()

    checked = runner.invoke(app, ["patch", "apply", "fix.diff", "--check"])
    assert checked.exit_code == 0, checked.output
    assert "app.py" in checked.output and (tmp_path / "app.py").read_text() == APP

    refused = runner.invoke(app, ["patch", "apply", str(bad)])
    assert refused.exit_code == 1 and "hunk 1" in refused.output

    applied = runner.invoke(app, ["patch", "apply", "-"], input=body("@@ @@"))
    assert applied.exit_code == 0, applied.output
    assert (tmp_path / "app.py").read_text() == AFTER

    missing = runner.invoke(app, ["patch", "apply", "nope.diff"])
    assert missing.exit_code == 2


def test_a_rename_with_changes_moves_the_patched_content() -> None:
    patch = (
        "--- a/docs/old.md\n+++ b/docs/new.md\n@@ -1,2 +1,2 @@\n # Title\n-old line\n+new line\n"
    )
    files = {"docs/old.md": "# Title\nold line\nend\n"}
    assert patch_paths(patch) == ["docs/old.md", "docs/new.md"]
    assert apply_patch(patch, files) == {
        "docs/old.md": None,
        "docs/new.md": "# Title\nnew line\nend\n",
    }


def test_a_git_rename_without_hunks_moves_the_file() -> None:
    patch = (
        "diff --git a/src/a.py b/src/b.py\nsimilarity index 100%\n"
        "rename from src/a.py\nrename to src/b.py\n"
    )
    assert apply_patch(patch, {"src/a.py": "x = 1\n"}) == {"src/a.py": None, "src/b.py": "x = 1\n"}


def test_a_rename_onto_an_existing_file_is_refused() -> None:
    patch = "diff --git a/a.py b/b.py\nrename from a.py\nrename to b.py\n"
    with pytest.raises(PatchError, match="b.py already exists"):
        apply_patch(patch, {"a.py": "1\n", "b.py": "2\n"})
