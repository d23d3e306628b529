"""The node's need for a reboot, reported as a label for the companion controller's data-aware reboots.

Unattended upgrades (Debian, Ubuntu, Amazon Linux's ``needs-restarting`` wrappers) leave
``/var/run/reboot-required`` when a patch needs a reboot; kured watches the same file. The agent
labels its own Node ``kbl.io/reboot-required=true`` while the file exists, and the companion
controller reboots such nodes one at a time per group through the safe path (cordon, drain
pods and data, reboot, wait Ready, uncordon: :mod:`controller.patching`), which removes the label.
The agent only ever sets the label: after the reboot the file is gone (``/var/run`` is a tmpfs).
"""

from __future__ import annotations

import logging
import os

from dataplane.agent.metrics import AgentMetrics
from kube.api import NODES, ApiError, KubeApi
from topology import labels

log = logging.getLogger(__name__)


class RebootReporter:
    """Labels the node once per appearance of ``path`` (``""``: off)."""

    def __init__(self, api: KubeApi, node: str, path: str, *, metrics: AgentMetrics) -> None:
        self.api = api
        self.node = node
        self.path = path
        self.metrics = metrics
        self.labelled = False

    def check(self) -> bool:
        """Label the node if the file appeared since the last label; returns whether a reboot is needed."""
        if not self.path:
            return False
        needed = os.path.exists(self.path)
        self.metrics.reboot_required.set(1 if needed else 0)
        if not needed:
            self.labelled = False
            return False
        if not self.labelled:
            try:
                self.api.patch(NODES, self.node, {"metadata": {"labels": {labels.REBOOT_REQUIRED: "true"}}})
            except ApiError as exc:
                log.warning("labelling %s %s: %s", self.node, labels.REBOOT_REQUIRED, exc)
                return True
            log.info("%s needs a reboot (%s): labelled %s=true", self.node, self.path, labels.REBOOT_REQUIRED)
            self.labelled = True
        return True
