"""The model catalog: which model an agent uses, the provider that talks to it, and what its
overflow errors taught about its window.

Owns model specs ("openai/<model>", "anthropic/<model>"), the defaults the model settings choose,
the explanation shown when no usable model is configured, the check of a model an agent is given
(one line naming what this server can run, or the models its provider lists when that list
lacks it), one provider per model (made on first use, with the configured retries, closed at
shutdown, sharing one GET /models per server), and the budgets learned from overflows.
"""

from __future__ import annotations

import asyncio
import importlib
import logging
from collections.abc import Callable
from dataclasses import asdict, dataclass

from cairn_protocol.rest import MODEL_NOT_OFFERED

from cairn_server.config import (
    ANTHROPIC_KEY_ENV,
    MODEL_ENV,
    OPENAI_BASE_URL_ENV,
    OPENAI_KEY_ENV,
    ModelSettings,
)
from cairn_server.errors import CairnServerError
from cairn_server.providers.base import Provider, ProviderError
from cairn_server.providers.model_list import SharedListing, not_offered
from cairn_server.providers.retry import RetryPolicy
from cairn_server.providers.windows import context_window

log = logging.getLogger(__name__)

ProviderFactory = Callable[[str], Provider]

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


# The largest answer Cairn asks for by default, and the share of the window it may take.
DEFAULT_MAX_TOKENS = 4096
ANSWER_SHARE = 4  # a quarter of the window
# A prompt counted with fewer tokens than this says little about the model's tokenizer.
CALIBRATION_MIN_TOKENS = 256
# Ratios this close to 1 are cl100k's usual error: budgets stay as counted.
CALIBRATION_DEADBAND = 1.05
MAX_TOKEN_RATIO = 3.0


@dataclass(frozen=True)
class Learned:
    """What a model's server taught: the window an overflow error reported (its own tokens),
    the budget overflows left (counted tokens), and how many of its tokens one counted token
    is (`token_ratio`, a running mean over `ratio_samples` prompts). Kept in the database."""

    context_window: int | None = None
    learned_budget: int | None = None
    token_ratio: float = 1.0
    ratio_samples: int = 0

    @property
    def ratio(self) -> float:
        """The ratio budgets are divided by: 1 unless the model clearly counts more."""
        return self.token_ratio if self.token_ratio >= CALIBRATION_DEADBAND else 1.0

    def with_prompt(self, counted: int, reported: int) -> Learned:
        """This, with one more prompt the server counted as `reported` tokens (our count:
        `counted`); the first samples are averaged, later ones weigh a fifth."""
        if counted < CALIBRATION_MIN_TOKENS or reported <= 0:
            return self
        sample = min(MAX_TOKEN_RATIO, max(1.0, reported / counted))
        weight = max(0.2, 1 / (self.ratio_samples + 1))
        ratio = self.token_ratio + weight * (sample - self.token_ratio)
        return Learned(self.context_window, self.learned_budget, ratio, self.ratio_samples + 1)

    def fields(self) -> dict[str, int | float | None]:
        return asdict(self)


def window_of(model: str, learned: Learned) -> int:
    """The model's window in its own tokens: what its server reported, else an estimate
    from the budget overflows left, else the table's (or the unknown-model default)."""
    if learned.context_window:
        return learned.context_window
    if learned.learned_budget:
        return int(learned.learned_budget * learned.ratio * ANSWER_SHARE / (ANSWER_SHARE - 1))
    return context_window(model)


def max_output_tokens(setting: int | None, window: int) -> int:
    """CAIRN_MODEL_MAX_TOKENS, else a quarter of the window, at most DEFAULT_MAX_TOKENS."""
    return setting or max(16, min(DEFAULT_MAX_TOKENS, window // ANSWER_SHARE))


@dataclass(frozen=True)
class ModelChoice:
    """The model an agent will use; usable only when `problem` is None. `not_offered`: the
    problem is that its provider does not have it (a model failure, not the settings)."""

    model: str | None
    problem: str | None
    not_offered: bool = False


def resolve_model(agent_model: str | None, settings: ModelSettings) -> ModelChoice:
    """The agent's own model, else CAIRN_MODEL, else a default for whichever key is set."""
    spec = (agent_model or "").strip() or settings.default_model or ""
    if not spec:
        if settings.anthropic_api_key:
            spec = DEFAULT_ANTHROPIC_MODEL
        elif settings.openai_api_key:
            spec = DEFAULT_OPENAI_MODEL
        else:
            return ModelChoice(model=None, problem=f"No model is configured.\n{HOW_TO_CONFIGURE}")
    return ModelChoice(model=spec, problem=spec_problem(spec, settings))


def spec_problem(spec: str, settings: ModelSettings) -> str | None:
    """Why `spec` cannot be used with these settings, or None."""
    if not spec.startswith(KNOWN_PREFIXES):
        known = ", ".join(f'"{prefix}<model>"' for prefix in KNOWN_PREFIXES)
        return f"Unknown model {spec!r}: a model must be written as {known}.\n{HOW_TO_CONFIGURE}"
    prefix, _, name = spec.partition("/")
    if not name:
        return f"Model {spec!r} names no model after {prefix + '/'!r}.\n{HOW_TO_CONFIGURE}"
    if spec.startswith(OPENAI_PREFIX):
        if settings.openai_api_key or settings.openai_base_url:
            return None
        return f"Model {spec!r} needs {OPENAI_KEY_ENV}, which is not set.\n{HOW_TO_CONFIGURE}"
    if settings.anthropic_api_key:
        return None
    return f"Model {spec!r} needs {ANTHROPIC_KEY_ENV}, which is not set.\n{HOW_TO_CONFIGURE}"


class UnknownModelError(CairnServerError, ValueError):
    """A model an agent cannot be given with this server's settings; the message is one line
    naming it and what the server can run."""

    code = "unknown_model"


class ModelNotOfferedError(UnknownModelError):
    """A well-formed model its provider does not have (its GET /models lacks it), or whose
    key the provider refused; the message names the closest models it lists."""

    code = MODEL_NOT_OFFERED


def check_model(spec: str, settings: ModelSettings) -> str:
    """`spec` as an agent's model (trimmed), or UnknownModelError saying why it cannot run
    here and what can."""
    model = spec.strip()
    problem = spec_problem(model, settings) if model else "Model '' names no model."
    if problem is None:
        return model
    reason = problem.splitlines()[0].rstrip(".")
    if "/" not in model and model:
        guesses = [prefix + model for prefix in configured_prefixes(settings)]
        if guesses:
            reason += f" (did you mean {' or '.join(guesses)}?)"
    raise UnknownModelError(f"{reason}; {available_models(settings)}")


def configured_prefixes(settings: ModelSettings) -> list[str]:
    """The providers this server has what they need for (a key, or a base URL for OpenAI)."""
    prefixes = []
    if settings.openai_api_key or settings.openai_base_url:
        prefixes.append(OPENAI_PREFIX)
    if settings.anthropic_api_key:
        prefixes.append(ANTHROPIC_PREFIX)
    return prefixes


def available_models(settings: ModelSettings) -> str:
    """What this server can run, as one clause: its configured providers and its default."""
    prefixes = configured_prefixes(settings)
    if not prefixes:
        return (
            f"this server has no model provider configured (set {OPENAI_KEY_ENV} or "
            f"{ANTHROPIC_KEY_ENV} where it runs)"
        )
    kinds = " or ".join(f"{prefix}<model>" for prefix in prefixes)
    if settings.openai_base_url and OPENAI_PREFIX in prefixes:
        kinds += f" (openai/ at {settings.openai_base_url})"
    default = resolve_model(None, settings).model
    return f"this server runs {kinds}" + (f"; its default is {default}" if default else "")


def retry_policy(settings: ModelSettings) -> RetryPolicy:
    """CAIRN_MODEL_RETRIES (default 4) and CAIRN_RETRY_BASE_DELAY_S (default 0.5)."""
    return RetryPolicy(max_retries=settings.retries, base_delay_s=settings.retry_base_delay_s)


def make_provider(
    model: str, settings: ModelSettings, listing: SharedListing | None = None
) -> Provider:
    """The provider for a model spec; ProviderError (with the fix) when it cannot be used.
    `listing`: its server's GET /models, shared with the other providers of that server."""
    problem = spec_problem(model, settings)
    if problem is not None:
        raise ProviderError(problem)
    retry = retry_policy(settings)
    _, _, name = model.partition("/")
    # The SDKs take seconds to import; only the one a model needs is loaded.
    if model.startswith(OPENAI_PREFIX):
        from cairn_server.providers.openai_provider import OpenAIProvider

        return OpenAIProvider(
            name,
            api_key=settings.openai_api_key or UNUSED_API_KEY,
            base_url=settings.openai_base_url,
            retry=retry,
            tool_choice=settings.tool_choice,
            listing=listing or SharedListing(),
        )
    from cairn_server.providers.anthropic_provider import AnthropicProvider

    return AnthropicProvider(
        name,
        api_key=settings.anthropic_api_key or "",
        base_url=settings.anthropic_base_url,
        retry=retry,
        listing=listing or SharedListing(),
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


class ModelCatalog:
    """The models of one server process: shared by every run, so SDK connections are reused."""

    def __init__(self, settings: ModelSettings, factory: ProviderFactory | None = None) -> None:
        self.settings = settings
        self._factory = factory
        self._providers: dict[str, Provider] = {}
        # Per model spec: what its server taught (a local server's window is often smaller
        # than Cairn assumes for an unknown model, its tokenizer not cl100k). The runtime
        # loads it from the database at start and stores every change.
        self._learned: dict[str, Learned] = {}
        # Per provider prefix (one server each): its GET /models, fetched once.
        self._listings: dict[str, SharedListing] = {}

    def resolve(self, agent_model: str | None) -> ModelChoice:
        return resolve_model(agent_model, self.settings)

    async def choose(self, agent_model: str | None) -> ModelChoice:
        """`resolve`, and a usable model checked against its provider's list of models."""
        choice = self.resolve(agent_model)
        if choice.model is None or choice.problem is not None:
            return choice
        problem = await self.not_offered(choice.model)
        return choice if problem is None else ModelChoice(choice.model, problem, not_offered=True)

    async def check_offered(self, model: str) -> str:
        """`model` (already checked by `check_model`), or ModelNotOfferedError when its
        provider's list lacks it."""
        problem = await self.not_offered(model)
        if problem is not None:
            raise ModelNotOfferedError(problem)
        return model

    async def not_offered(self, model: str) -> str | None:
        """Why `model`'s provider cannot run it (its authoritative GET /models lacks it, or it
        refused the key), or None; the list is fetched once per server."""
        # Its SDK takes seconds to import the first time: not on the event loop.
        await asyncio.to_thread(preload_provider, model)
        try:
            provider = self.provider(model)
        except ProviderError:
            return None
        problem = not_offered(model, await provider.list_models())
        if problem is not None:  # no run will ever use it
            self._providers.pop(model, None)
            await provider.aclose()
        return problem

    def provider(self, model: str) -> Provider:
        """The model's provider, made on first use; ProviderError when it cannot be made."""
        if model not in self._providers:
            if self._factory:
                self._providers[model] = self._factory(model)
            else:
                listing = self._listings.setdefault(model.partition("/")[0], SharedListing())
                self._providers[model] = make_provider(model, self.settings, listing)
        return self._providers[model]

    def summary_model(self, model: str | None) -> str | None:
        """The model that summarises a conversation run by `model` (CAIRN_SUMMARY_MODEL)."""
        return self.settings.summary_model or model

    def reflection_model(self, model: str | None) -> str | None:
        """The model that reflects on a conversation run by `model`: CAIRN_REFLECTION_MODEL,
        else the summary model, else `model` (the tiering: the cheap model for upkeep)."""
        return self.settings.reflection_model or self.summary_model(model)

    def summariser(self, model: str | None) -> Provider | None:
        """The provider that writes summaries for `model`'s conversations; None (the digest
        is used) when it cannot be made."""
        return self._tier(self.summary_model(model), "summary", "compaction will use the digest")

    def reflector(self, model: str | None) -> Provider | None:
        """The provider that reflects on `model`'s conversations; None when it cannot be made
        (the reflection then fails, saying so, and changes nothing)."""
        return self._tier(self.reflection_model(model), "reflection", "nothing is reflected")

    def _tier(self, spec: str | None, purpose: str, without: str) -> Provider | None:
        if spec is None:
            return None
        try:
            return self.provider(spec)
        except ProviderError as exc:
            log.warning("no %s model (%s); %s", purpose, exc, without)
            return None

    def learned(self, model: str | None) -> Learned:
        return self._learned.get(model or "", Learned())

    def learned_budget(self, model: str | None) -> int | None:
        """The budget an overflow error of `model` taught, if one did."""
        return self.learned(model).learned_budget

    def remember(self, model: str | None, learned: Learned) -> None:
        if model is not None:
            self._learned[model] = learned

    def learn_budget(self, model: str | None, tokens: int, window: int | None = None) -> Learned:
        """Keep the budget an overflow taught (and the window the server reported)."""
        old = self.learned(model)
        learned = Learned(window or old.context_window, tokens, old.token_ratio, old.ratio_samples)
        self.remember(model, learned)
        return learned

    def window(self, model: str | None) -> int | None:
        """The model's window in its own tokens, as far as Cairn knows (None: no model)."""
        return None if model is None else window_of(model, self.learned(model))

    def max_tokens(self, model: str | None) -> int:
        """How many tokens one answer may take (CAIRN_MODEL_MAX_TOKENS, else sized to the
        window)."""
        window = self.window(model) or DEFAULT_MAX_TOKENS * ANSWER_SHARE
        return max_output_tokens(self.settings.max_tokens, window)

    async def aclose(self) -> None:
        for provider in self._providers.values():
            await provider.aclose()
        self._providers.clear()
