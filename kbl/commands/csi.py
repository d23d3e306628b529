"""``kbl csi``: the CSI driver data.kbl.io (node service), a container beside the agent."""

from __future__ import annotations

from dataplane.csi.commanding import configure, run

__all__ = ["configure", "run"]
