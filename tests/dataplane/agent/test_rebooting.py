"""The agent labels its Node while the host says a reboot is required (real file, in-memory API)."""

from __future__ import annotations

from pathlib import Path

from dataplane.agent.metrics import AgentMetrics
from dataplane.agent.rebooting import RebootReporter
from kube.api import NODES
from kube.memory import MemoryApi
from tests.dataplane.agent.cluster import node
from topology import labels


def test_a_node_is_labelled_reboot_required_while_the_hosts_file_exists_and_only_once(tmp_path: Path) -> None:
    api = MemoryApi()
    api.put(NODES, node("n1", "a"))
    flag = tmp_path / "reboot-required"
    reporter = RebootReporter(api, "n1", str(flag), metrics=AgentMetrics())
    assert reporter.check() is False
    assert labels.REBOOT_REQUIRED not in (api.get(NODES, "n1") or {})["metadata"]["labels"]
    flag.write_text("*** System restart required ***\n")
    assert reporter.check() is True
    assert (api.get(NODES, "n1") or {})["metadata"]["labels"][labels.REBOOT_REQUIRED] == "true"
    # The controller's patcher removes the label after the reboot; the file is gone by then.
    api.patch(NODES, "n1", {"metadata": {"labels": {labels.REBOOT_REQUIRED: None}}})
    flag.unlink()
    assert reporter.check() is False
    assert labels.REBOOT_REQUIRED not in (api.get(NODES, "n1") or {})["metadata"]["labels"]
    flag.write_text("again\n")
    assert reporter.check() is True
    assert (api.get(NODES, "n1") or {})["metadata"]["labels"][labels.REBOOT_REQUIRED] == "true"


def test_with_no_file_configured_the_agent_never_touches_its_node(tmp_path: Path) -> None:
    api = MemoryApi()
    api.put(NODES, node("n1", "a"))
    before = api.get(NODES, "n1")
    assert RebootReporter(api, "n1", "", metrics=AgentMetrics()).check() is False
    assert api.get(NODES, "n1") == before
