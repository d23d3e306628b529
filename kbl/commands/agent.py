"""``kbl agent``: the node agent (one per node, a DaemonSet): hydrate, verify, scrub, serve."""

from __future__ import annotations

from dataplane.agent.commanding import configure, run

__all__ = ["configure", "run"]
