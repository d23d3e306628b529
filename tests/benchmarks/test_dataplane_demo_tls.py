"""The demo's whole data act over mutual TLS: a private CA, agents serving HTTPS with client
certificates required, peer copies and the reader's reads over it (real files, real sockets)."""

from __future__ import annotations

from pathlib import Path

import pytest

from benchmarks.dataplane_demo import run_data_plane
from topology.examples import make_cluster_nodes


@pytest.mark.timeout(600)
def test_the_whole_data_act_runs_over_mutual_tls_and_loses_nothing(tmp_path: Path) -> None:
    nodes = make_cluster_nodes(zones=3, racks_per_zone=2, hosts_per_rack=4)
    result = run_data_plane(nodes, tmp_path, quick=True, tls=True)
    assert result.tls
    assert result.ready == {"replicated": True, "erasure": True}
    assert result.shards_lost == 0
    assert result.caught_on_read >= 1
    assert result.read_after_flip_identical
    assert result.replicas_identical == result.replicas_checked > 0
    assert result.erasure_shards_identical == result.erasure_shards_checked > 0
    assert (tmp_path / "data" / "tls" / "ca.crt").is_file()
