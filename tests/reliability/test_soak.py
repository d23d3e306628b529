"""Soaking the extender over real HTTP at concurrency 64: zero errors, memory flat.

The short soak (500 nodes, about 3 s of load) is always on; the long one (5,000 nodes, 60 s) is
behind ``KBL_SLOW=1``. Both run ``kbl serve`` in a child process on 127.0.0.1 and stop by
themselves (bounded in requests and in time). Latency is reported by ``kbl bench reliability``,
not asserted here: these tests judge correctness and memory, never wall-clock speed.
"""

from __future__ import annotations

import pytest

from benchmarks.soaking import SoakReport, SoakSettings, soak


def _assert_healthy(report: SoakReport) -> None:
    for phase in (report.single, report.loaded):
        assert phase.requests > 0
        assert phase.errors == 0, phase.error_samples[:3]
    rss = report.rss_mib
    # Flat: after warm-up the server may not keep growing with the number of requests served.
    growth = rss["end"] - rss["after_warmup"]
    assert growth <= max(16.0, 0.1 * rss["after_warmup"]), rss


def test_short_soak_at_concurrency_64_has_no_errors_and_flat_memory() -> None:
    report = soak(SoakSettings(nodes=500, shards=512, candidates=100, max_seconds=3.0, max_requests=20_000, single_requests=200))
    assert report.loaded.concurrency == 64
    _assert_healthy(report)


@pytest.mark.slow
def test_long_soak_at_5000_nodes_has_no_errors_and_flat_memory() -> None:
    report = soak(SoakSettings(nodes=5000, shards=4096, candidates=500, max_seconds=60.0, max_requests=500_000))
    _assert_healthy(report)
