"""The node agent (``kbl agent``): one per node, it makes the node's disk match the placements.

It watches DataSets and every node's NodeHoldings, hydrates the pieces its node is assigned
(a ready holder in its zone, else the DataSet's source, else a holder in another zone; erasure
fragments encoded from the source or rebuilt from any ``k`` others), writes atomically, verifies
against checksums fixed at hydration, scrubs, quarantines and repairs, reports its holdings, and
serves shards and pieces over an authenticated HTTP read API.

Modules: :mod:`.settings` (knobs), :mod:`.layouts` (on-disk layout), :mod:`.storing` (atomic
writes, records, quarantine), :mod:`.sources` (S3, paths, peers), :mod:`.coding` (pyeclib),
:mod:`.bandwidth` (token bucket), :mod:`.hydrating` (what to hold, and getting it),
:mod:`.scrubbing`, :mod:`.reporting` (NodeHoldings), :mod:`.authenticating`, :mod:`.authorizing`, :mod:`.serving`
(read API), :mod:`.metrics`, :mod:`.running` (one agent, or N in one process).
"""

from dataplane.agent.running import Agent, Security, TlsFiles, start_agents
from dataplane.agent.settings import AgentSettings

__all__ = ["Agent", "AgentSettings", "Security", "TlsFiles", "start_agents"]
