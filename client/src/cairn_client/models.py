"""The agent's model as a person sees and chooses it: `/model [name]` and `--model NAME`.

Owns asking the server (REST: the agent's `model`, which it keeps) and the lines that say
which model runs; the server checks the name and says what it can run instead.
"""

from __future__ import annotations

from cairn_protocol import WorkspaceIdentity
from cairn_protocol.rest import AgentPublic

from cairn_client.api import ApiError, CairnApi
from cairn_client.errors import CairnError, ExitCode

DEFAULT_WORDS = ("default", "reset")  # `/model default` returns to the server's default


class ModelRefused(CairnError):
    """The server cannot run the model asked for; the message names it and what it runs."""

    exit_code = ExitCode.USAGE


async def set_model(api: CairnApi, agent_id: str, name: str) -> AgentPublic:
    """Give the agent `name` (kept for the next `cairn`); "default" returns it to the
    server's default. ModelRefused (one line) when the server cannot run it."""
    wanted = None if name.strip().lower() in DEFAULT_WORDS else name.strip()
    try:
        return await api.set_agent_model(agent_id, wanted)
    except ApiError as exc:
        if exc.status == 422:
            raise ModelRefused(exc.message) from None
        raise


async def choose_model(api: CairnApi, workspace: WorkspaceIdentity, name: str) -> AgentPublic:
    """`--model NAME`: the workspace's agent (made on first use) given `name` before the
    session opens."""
    agent = await api.ensure_agent(workspace)
    return await set_model(api, agent.id, name)


def model_line(running: str | None, agent: AgentPublic | None) -> str:
    """Which model the agent uses and why: its own choice or the server's default."""
    if running is None:
        return "No model is configured (see the setup notes)."
    chosen = agent is not None and agent.model is not None
    why = "chosen for this agent" if chosen else "the server's default"
    return f"Model: {running} ({why}); /model NAME switches it, /model default goes back."


def switched_line(agent: AgentPublic) -> str:
    """What a switch did, said after it."""
    if agent.model is None:
        return "Model: the server's default from the next message on."
    return f"Model: {agent.model} from the next message on (kept for the next cairn)."
