"""What a server process counts for Prometheus when CAIRN_METRICS is on (GET /metrics).

Owns the metrics' names and what each measures. prometheus-client loads only when they are
on: its import costs ~80 ms of a start, which the local server `cairn` starts does not pay.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from prometheus_client import CollectorRegistry

# Seconds: a step's own work is milliseconds, a model call or a person's approval minutes.
SHORT = (0.002, 0.005, 0.01, 0.02, 0.05, 0.1, 0.2, 0.5, 1.0, 2.0, 5.0)
LONG = (0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0, 180.0, 600.0)


class Metrics:
    """One process's metrics, in a registry of its own (several servers may share a process in
    tests)."""

    def __init__(self) -> None:
        from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram

        self.registry: CollectorRegistry = CollectorRegistry()
        r = self.registry
        self.active_runs = Gauge("cairn_active_runs", "Runs going in this process", registry=r)
        self.steps = Counter("cairn_steps", "Model calls made by runs", registry=r)
        self.step_seconds = Histogram(
            "cairn_step_overhead_seconds",
            "A step's own time: its run's work outside the model call and the tool waits",
            buckets=SHORT,
            registry=r,
        )
        self.model_seconds = Histogram(
            "cairn_model_call_seconds",
            "One model call, from its request to its last chunk",
            buckets=LONG,
            registry=r,
        )
        self.tool_wait_seconds = Histogram(
            "cairn_tool_wait_seconds",
            "From a client tool request to its result (policy, person and tool)",
            buckets=LONG,
            registry=r,
        )
        self.orphaned_runs = Counter(
            "cairn_orphaned_runs_ended",
            "Runs of server processes that were gone, ended by this one",
            registry=r,
        )
        self.connections = Gauge(
            "cairn_open_connections", "HTTP requests and websockets open", registry=r
        )

    def render(self) -> tuple[bytes, str]:
        """The metrics in Prometheus' text format, and its content type."""
        from prometheus_client import CONTENT_TYPE_LATEST, generate_latest

        return generate_latest(self.registry), CONTENT_TYPE_LATEST
