"""The agent's model as a person sees and chooses it: `/model [name]` and `--model NAME`.

Owns asking the server (REST: the agent's `model`, which it keeps, and the server's default),
the lines that say which model runs, and how a model the server cannot run ends `cairn`; the
server checks the name and says what it can run instead.
"""

from __future__ import annotations

from cairn_protocol import Welcome, WorkspaceIdentity
from cairn_protocol.rest import MODEL_NOT_OFFERED, AgentPublic

from cairn_client.api import ApiError, CairnApi
from cairn_client.errors import CairnError, ExitCode

DEFAULT_WORDS = ("default", "reset")  # `/model default` returns to the server's default


class ModelRefused(CairnError):
    """The server cannot run the model asked for; the message names it and what it runs.
    A name its provider does not have is a model failure (3), any other refusal usage (2)."""

    exit_code = ExitCode.USAGE


def unusable_model(welcome: Welcome) -> ModelRefused | None:
    """Why the session's model cannot run, as the error `cairn` ends with; None: it can."""
    problem = welcome.model_unusable()
    if problem is None:
        return None
    code = ExitCode.MODEL if welcome.model_not_offered else ExitCode.USAGE
    return ModelRefused(problem, code)


async def set_model(api: CairnApi, agent_id: str, name: str) -> AgentPublic:
    """Give the agent `name` (kept for the next `cairn`); "default" returns it to the
    server's default. ModelRefused (one line) when the server cannot run it."""
    wanted = None if name.strip().lower() in DEFAULT_WORDS else name.strip()
    try:
        return await api.set_agent_model(agent_id, wanted)
    except ApiError as exc:
        if exc.status == 422:
            code = ExitCode.MODEL if exc.code == MODEL_NOT_OFFERED else ExitCode.USAGE
            raise ModelRefused(exc.message, code) from None
        raise


async def choose_model(api: CairnApi, workspace: WorkspaceIdentity, name: str) -> AgentPublic:
    """`--model NAME`: the workspace's agent (made on first use) given `name` before the
    session opens."""
    agent = await api.ensure_agent(workspace)
    return await set_model(api, agent.id, name)


def default_label(agent: AgentPublic) -> str:
    """The server's default as the user reads it: "default (openai/gpt-5.4-mini)"."""
    return (
        f"default ({agent.default_model})" if agent.default_model else "default (none configured)"
    )


def model_line(agent: AgentPublic) -> str:
    """Which model the agent uses and why (its own choice or the server's default), and
    which model the default is."""
    if agent.model is not None:
        return (
            f"Model: {agent.model} (chosen for this agent); /model NAME switches it, "
            f"/model default goes back to the server's {default_label(agent)}."
        )
    if agent.default_model is None:
        return "No model is configured (see the setup notes)."
    return f"Model: {agent.default_model} (the server's default); /model NAME switches it."


def switched_line(agent: AgentPublic) -> str:
    """What a switch did, said after it."""
    if agent.model is None:
        return f"Model: the server's {default_label(agent)} from the next message on."
    return f"Model: {agent.model} from the next message on (kept for the next cairn)."
