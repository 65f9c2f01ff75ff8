"""Real model server: the real `cairn -p` against a real OpenAI-compatible server.

CAIRN_REAL_MODEL names the server: a URL (http://host:port/v1), or a GGUF file served by the
llama.cpp binary at CAIRN_LLAMA_SERVER (started here with `--jinja -c 8192`). Measured: the
time of a short answer (p50 of 3), whether a tool call went to the client and back, whether a
request over the window was recovered (answered, its budget brought under the window),
whether an answer cut at a 16-token cap exits 1 saying so, and how many of the model's tokens
one cl100k token is (the server's own count).

    CAIRN_REAL_MODEL=/path/model.gguf CAIRN_LLAMA_SERVER=/path/llama-server \\
        uv run python bench/real_model.py

The last line is one key=value line; without CAIRN_REAL_MODEL it says skipped=1.
"""

from __future__ import annotations

import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from cairn_client.local_server import stop_local_server
from cairn_fakes.llama import llama_server, real_model_from
from cairn_server.context.tokens import count_tokens
from openai import OpenAI

MODEL = "openai/smollm2-135m-instruct"
WINDOW = 8192
RUNS = 3
HUGE = "Here is a log line about the cache layer and its invalidation. " * 900


def cairn_p(
    repo: Path, data_dir: Path, url: str, prompt: str, **env: str
) -> tuple[int, str, float]:
    """`cairn -p --json PROMPT`: exit code, output and stderr, seconds."""
    clean = {k: v for k, v in os.environ.items() if not k.startswith(("CAIRN_", "OPENAI_"))}
    variables = {
        **clean,
        "CAIRN_DATA_DIR": str(data_dir),
        "CAIRN_IDLE_EXIT_S": "60",
        "CAIRN_MODEL": MODEL,
        "OPENAI_BASE_URL": url,
        "CAIRN_MODEL_RETRIES": "1",
        # A small model may call tools in a loop; each step costs seconds on a CPU.
        "CAIRN_STEP_LIMIT": "8",
        **env,
    }
    started = time.perf_counter()
    done = subprocess.run(
        ["cairn", "-p", "--json", prompt],
        cwd=repo,
        env=variables,
        capture_output=True,
        text=True,
        timeout=900,
        check=False,
    )
    return done.returncode, done.stdout + done.stderr, time.perf_counter() - started


def events(output: str) -> list[dict[str, object]]:
    parsed = []
    for line in output.splitlines():
        try:
            value = json.loads(line)
        except ValueError:
            continue
        if isinstance(value, dict):
            parsed.append(value)
    return parsed


def overflow_recovery(code: int, seen: list[dict[str, object]]) -> tuple[bool, str]:
    """Whether a request over the window still got its answer (the run ended its turn, or was
    cut at the answer cap), and how the budget came down: a compaction the server's overflow
    error triggered, or a budget already below the window (learned and kept from before)."""
    finished = [e for e in seen if e.get("type") == "run_finished"]
    stop = finished[-1].get("stop_reason") if finished else None
    answered = (code == 0 and stop == "end_turn") or (code == 1 and stop == "truncated")
    overflowed = any(
        e.get("type") == "context_compacted" and e.get("trigger") == "overflow" for e in seen
    )
    budgets = [int(str(e["context_budget"])) for e in seen if e.get("type") == "step_finished"]
    if overflowed:
        how = "compacted after the server's overflow error"
    elif budgets and min(budgets) < WINDOW:
        how = f"budget already {min(budgets)} < {WINDOW}"
    else:
        return False, f"exit {code}, stop {stop}, no compaction, budgets {budgets}"
    return answered, how if answered else f"exit {code}, stop {stop}, {how}"


def token_ratio(url: str) -> float:
    """The server's prompt tokens over cl100k's count, for a text of about 2,000 tokens."""
    text = "def total(items):\n    return sum(item.price * item.count for item in items)\n" * 80
    client = OpenAI(base_url=url, api_key="unused")
    answer = client.chat.completions.create(
        model="model", messages=[{"role": "user", "content": text}], max_tokens=1
    )
    assert answer.usage is not None
    return answer.usage.prompt_tokens / count_tokens(text)


def make_repo(folder: Path) -> Path:
    repo = folder / "repo"
    repo.mkdir()
    (repo / "README.md").write_text("# Demo\nA demo project. It prints hello.\n")
    subprocess.run(["git", "init", "-q"], cwd=repo, check=True)
    return repo


def main() -> int:
    model = real_model_from()
    if model is None:
        print("set CAIRN_REAL_MODEL (a URL, or a GGUF file with CAIRN_LLAMA_SERVER) to run")
        print("real_model skipped=1")
        return 0
    with tempfile.TemporaryDirectory() as tmp, llama_server(model, context=WINDOW) as url:
        folder = Path(tmp)
        repo, data_dir, capped_dir = make_repo(folder), folder / "data", folder / "capped"
        try:
            times = []
            for _ in range(RUNS):
                code, _, seconds = cairn_p(repo, data_dir, url, "Say hello in five words.")
                times.append(seconds)
            answered = code == 0
            _, output, _ = cairn_p(
                repo, data_dir, url, "Use the read tool to read README.md, then summarise it."
            )
            tool_calls = sum(1 for e in events(output) if e.get("type") == "tool_request")
            overflow_code, overflow_output, overflow_s = cairn_p(
                repo, data_dir, url, f"{HUGE}\nWhat is this log about?"
            )
            recovered, how = overflow_recovery(overflow_code, events(overflow_output))
            # Its own data dir: a local server already up keeps the settings it started with.
            cut_code, cut_output, _ = cairn_p(
                repo,
                capped_dir,
                url,
                "Write a long story about a cat, in ten paragraphs.",
                CAIRN_MODEL_MAX_TOKENS="16",
            )
            truncated = cut_code == 1 and "cut at 16 tokens" in cut_output
            ratio = token_ratio(url)
        finally:
            stop_local_server(data_dir)
            stop_local_server(capped_dir)
    print(f"short answer, `cairn -p` end to end: p50 {statistics.median(times):.2f} s")
    print(f"tool calls made by the model and run by the client: {tool_calls}")
    print(
        f"a request over the {WINDOW}-token window: recovered={recovered} ({how}) "
        f"in {overflow_s:.1f} s"
    )
    print(f"an answer cut at 16 tokens exits 1 saying so: {truncated}")
    print(f"model tokens per cl100k token: {ratio:.2f}")
    print(
        f"real_model answer_p50_s={statistics.median(times):.2f} answered={int(answered)} "
        f"tool_calls={tool_calls} overflow_recovered={int(recovered)} "
        f"truncated_exit_1={int(truncated)} token_ratio={ratio:.2f}"
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
