"""What Cairn learns about a model's server and decides from it: the token ratio, the window
and the answer's cap, and how tools are asked for."""

from __future__ import annotations

import pytest
from cairn_server.config import ServerSettings, SettingsError
from cairn_server.providers.catalog import Learned, ModelCatalog, max_output_tokens, window_of
from cairn_server.providers.tool_use import DROPPED_TOOLS, NO_TOOLS, ToolUse, tool_use


def test_the_answer_cap_is_a_quarter_of_the_window_at_most_4096_unless_set() -> None:
    assert max_output_tokens(None, 128_000) == 4096
    assert max_output_tokens(None, 8192) == 2048
    assert max_output_tokens(None, 2048) == 512
    assert max_output_tokens(300, 8192) == 300


def test_the_catalog_sizes_the_cap_by_the_window_it_learned() -> None:
    catalog = ModelCatalog(ServerSettings.from_env({}).model)
    assert catalog.max_tokens("openai/smollm2") == 4096  # the 128k guess
    catalog.learn_budget("openai/smollm2", 5000, window=8192)
    assert catalog.window("openai/smollm2") == 8192
    assert catalog.max_tokens("openai/smollm2") == 2048
    # Without a reported window, it is estimated from the budget the overflow left.
    assert window_of("openai/x", Learned(learned_budget=3000, token_ratio=1.3)) == 5200


def test_max_tokens_setting_is_checked() -> None:
    settings = ServerSettings.from_env({"CAIRN_MODEL_MAX_TOKENS": "512"})
    assert settings.model.max_tokens == 512
    with pytest.raises(SettingsError, match="CAIRN_MODEL_MAX_TOKENS"):
        ServerSettings.from_env({"CAIRN_MODEL_MAX_TOKENS": "0"})
    with pytest.raises(SettingsError, match="CAIRN_MODEL_TOOL_CHOICE"):
        ServerSettings.from_env({"CAIRN_MODEL_TOOL_CHOICE": "sometimes"})


def test_the_token_ratio_follows_the_server_counts() -> None:
    learned = Learned()
    assert learned.with_prompt(100, 500) == learned  # too short to say anything
    first = learned.with_prompt(2164, 2905)  # SmolLM2 against cl100k, measured
    assert first.token_ratio == pytest.approx(2905 / 2164) and first.ratio_samples == 1
    second = first.with_prompt(2000, 2600)
    assert first.token_ratio > second.token_ratio > 1.3
    # A model that counts fewer than cl100k, or about as many, leaves budgets as counted.
    assert Learned().with_prompt(2000, 1800).ratio == 1.0
    assert Learned().with_prompt(2000, 2060).ratio == 1.0


@pytest.mark.parametrize(
    ("setting", "kind", "expected"),
    [
        (None, "other", ToolUse(None, stream=True)),
        (None, "llama-cpp-python", ToolUse("auto", stream=False)),
        ("auto", "other", ToolUse("auto", stream=True)),
        ("auto", "llama-cpp-python", ToolUse("auto", stream=False)),
        ("required", "llama-cpp-python", ToolUse("required", stream=True)),
        ("omit", "other", ToolUse(None, stream=True)),
        ("omit", "llama-cpp-python", ToolUse(None, stream=True, problem=DROPPED_TOOLS)),
        ("none", "other", ToolUse("none", stream=True, problem=NO_TOOLS)),
    ],
)
def test_how_tools_are_asked_for(setting: str | None, kind: str, expected: ToolUse) -> None:
    assert tool_use(setting, kind) == expected  # type: ignore[arg-type]
