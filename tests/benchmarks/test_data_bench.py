"""``kbl bench data`` runs end to end on tiny shards and reports every figure as a ratio."""

from __future__ import annotations

from pathlib import Path

from benchmarks.data import measure


def test_data_bench_reports_hydration_erasure_and_repair_ratios(tmp_path: Path) -> None:
    figures = measure(2, 256 * 1024, 400.0, tmp_path)
    for section, key in (
        ("hydration", "source_vs_copyfile"),
        ("hydration", "peer_vs_plain_get"),
        ("erasure", "agent_vs_library_encode"),
        ("erasure", "agent_vs_library_rebuild"),
        ("repair", "repair_vs_bound"),
    ):
        assert figures[section][key] > 0, (section, key)
    assert figures["repair"]["lost_bytes"] == 256 * 1024 * 1
