"""Which model an agent uses, and the provider that talks to it.

Owns model specs ("openai/<model>", "anthropic/<model>"), the defaults chosen from the
environment, the explanation shown when no usable model is configured, and provider creation
(with the retry policy the environment asks for).
"""

from __future__ import annotations

import importlib
from collections.abc import Mapping
from dataclasses import dataclass

from cairn_server.providers.base import Provider, ProviderError
from cairn_server.providers.retry import RetryPolicy

MODEL_ENV = "CAIRN_MODEL"
RETRIES_ENV = "CAIRN_MODEL_RETRIES"
RETRY_BASE_DELAY_ENV = "CAIRN_RETRY_BASE_DELAY_S"
OPENAI_KEY_ENV = "OPENAI_API_KEY"
OPENAI_BASE_URL_ENV = "OPENAI_BASE_URL"
ANTHROPIC_KEY_ENV = "ANTHROPIC_API_KEY"
ANTHROPIC_BASE_URL_ENV = "ANTHROPIC_BASE_URL"

OPENAI_PREFIX = "openai/"
ANTHROPIC_PREFIX = "anthropic/"
KNOWN_PREFIXES = (OPENAI_PREFIX, ANTHROPIC_PREFIX)

# Current models that need no per-model settings (no thinking on by default).
DEFAULT_ANTHROPIC_MODEL = "anthropic/claude-sonnet-4-6"
DEFAULT_OPENAI_MODEL = "openai/gpt-5.4-mini"

# OpenAI-compatible servers (Ollama, llama.cpp) often need no key; the SDK insists on one.
UNUSED_API_KEY = "unused"

HOW_TO_CONFIGURE = f"""\
Configure a model with environment variables, then restart Cairn:
  {MODEL_ENV}={DEFAULT_OPENAI_MODEL} and {OPENAI_KEY_ENV}=...
      (add {OPENAI_BASE_URL_ENV}=http://host:port/v1 for any OpenAI-compatible server:
       vLLM, Ollama, llama.cpp)
  {MODEL_ENV}={DEFAULT_ANTHROPIC_MODEL} and {ANTHROPIC_KEY_ENV}=...
To try Cairn without a model, run `cairn demo`."""


@dataclass(frozen=True)
class ModelChoice:
    """The model an agent will use; usable only when `problem` is None."""

    model: str | None
    problem: str | None


def resolve_model(agent_model: str | None, env: Mapping[str, str]) -> ModelChoice:
    """The agent's own model, else CAIRN_MODEL, else a default for whichever key is set."""
    spec = (agent_model or "").strip() or env.get(MODEL_ENV, "").strip()
    if not spec:
        if env.get(ANTHROPIC_KEY_ENV):
            spec = DEFAULT_ANTHROPIC_MODEL
        elif env.get(OPENAI_KEY_ENV):
            spec = DEFAULT_OPENAI_MODEL
        else:
            return ModelChoice(model=None, problem=f"No model is configured.\n{HOW_TO_CONFIGURE}")
    return ModelChoice(model=spec, problem=spec_problem(spec, env))


def spec_problem(spec: str, env: Mapping[str, str]) -> str | None:
    """Why `spec` cannot be used with this environment, or None."""
    if not spec.startswith(KNOWN_PREFIXES):
        known = ", ".join(f'"{prefix}<model>"' for prefix in KNOWN_PREFIXES)
        return f"Unknown model {spec!r}: a model must be written as {known}.\n{HOW_TO_CONFIGURE}"
    prefix, _, name = spec.partition("/")
    if not name:
        return f"Model {spec!r} names no model after {prefix + '/'!r}.\n{HOW_TO_CONFIGURE}"
    if spec.startswith(OPENAI_PREFIX):
        if env.get(OPENAI_KEY_ENV) or env.get(OPENAI_BASE_URL_ENV):
            return None
        return f"Model {spec!r} needs {OPENAI_KEY_ENV}, which is not set.\n{HOW_TO_CONFIGURE}"
    if env.get(ANTHROPIC_KEY_ENV):
        return None
    return f"Model {spec!r} needs {ANTHROPIC_KEY_ENV}, which is not set.\n{HOW_TO_CONFIGURE}"


def env_number(env: Mapping[str, str], name: str, default: float) -> float:
    text = env.get(name, "").strip()
    if not text:
        return default
    try:
        value = float(text)
    except ValueError:
        value = -1.0
    if not value >= 0 or value == float("inf"):
        raise ProviderError(f"{name} must be a number >= 0, not {text!r}.")
    return value


def retry_policy(env: Mapping[str, str]) -> RetryPolicy:
    """CAIRN_MODEL_RETRIES (default 4) and CAIRN_RETRY_BASE_DELAY_S (default 0.5)."""
    defaults = RetryPolicy()
    retries = env_number(env, RETRIES_ENV, defaults.max_retries)
    if retries != int(retries):
        raise ProviderError(f"{RETRIES_ENV} must be a whole number, not {env[RETRIES_ENV]!r}.")
    base_delay = env_number(env, RETRY_BASE_DELAY_ENV, defaults.base_delay_s)
    return RetryPolicy(max_retries=int(retries), base_delay_s=base_delay)


def make_provider(model: str, env: Mapping[str, str]) -> Provider:
    """The provider for a model spec; ProviderError (with the fix) when it cannot be used."""
    problem = spec_problem(model, env)
    if problem is not None:
        raise ProviderError(problem)
    retry = retry_policy(env)
    _, _, name = model.partition("/")
    # The SDKs take seconds to import; only the one a model needs is loaded.
    if model.startswith(OPENAI_PREFIX):
        from cairn_server.providers.openai_provider import OpenAIProvider

        return OpenAIProvider(
            name,
            api_key=env.get(OPENAI_KEY_ENV) or UNUSED_API_KEY,
            base_url=env.get(OPENAI_BASE_URL_ENV) or None,
            retry=retry,
        )
    from cairn_server.providers.anthropic_provider import AnthropicProvider

    return AnthropicProvider(
        name,
        api_key=env[ANTHROPIC_KEY_ENV],
        base_url=env.get(ANTHROPIC_BASE_URL_ENV) or None,
        retry=retry,
    )


PROVIDER_MODULES = {
    OPENAI_PREFIX: "cairn_server.providers.openai_provider",
    ANTHROPIC_PREFIX: "cairn_server.providers.anthropic_provider",
}


def preload_provider(model: str | None) -> None:
    """Import a model's SDK ahead of its first request (run in a worker thread at start-up)."""
    for prefix, module in PROVIDER_MODULES.items():
        if model and model.startswith(prefix):
            importlib.import_module(module)
