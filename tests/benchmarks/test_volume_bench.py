"""``kbl bench volume`` measures what it says: every byte read through the volume and the floor,
local replicas bind-mounted, the others through FUSE; ratios and targets reported."""

from __future__ import annotations

from pathlib import Path

import pytest

from benchmarks.volume import TARGETS, measure, unavailable

pytestmark = pytest.mark.skipif(bool(unavailable()), reason=unavailable() or "mounts available")


def test_the_volume_benchmark_reads_every_shard_both_ways_and_reports_each_ratio_with_its_target(tmp_path: Path) -> None:
    figures = measure(2, 1 << 20, 1, tmp_path)
    assert figures["local"]["bind_mounted_shards"] == 2
    assert figures["remote"]["bind_mounted_shards"] == 0
    assert figures["erasure"]["bind_mounted_shards"] == 0
    for kind, target in TARGETS.items():
        f = figures[kind]
        assert f["target"] == target
        assert f["floor_MBps"] > 0
        assert f["volume_MBps"] > 0
        assert f["ratio"] == pytest.approx(f["volume_MBps"] / f["floor_MBps"], rel=0.01)
