"""``kbl bench interruptions``: kbl never does worse than nothing and loses nothing within the bound."""

from __future__ import annotations

import json
from pathlib import Path

from benchmarks.interruptions import Scenario, run_scenarios
from kbl.cli import main


def test_kbl_loses_no_shard_when_the_bound_fits_the_notice_and_never_does_worse_than_nothing() -> None:
    rows = run_scenarios([2, 4, 6], [5.0, 1000.0], Scenario(shards=64, shard_bytes=2**30), trials=2)
    assert len(rows) == 3 * 2 * 2
    for row in rows:
        assert row.lost_kbl <= row.lost_nothing
        assert row.below_kbl <= row.below_nothing
        if row.bound_s <= row.notice_s:
            assert row.lost_kbl == 0, row
        if row.full_copy_s <= row.notice_s:
            assert row.below_kbl == 0, row
    assert any(r.lost_nothing > 0 and r.lost_kbl == 0 for r in rows)  # the warning saved something


def test_bench_command_prints_the_table_with_the_bound_and_writes_json(tmp_path: Path) -> None:
    out = tmp_path / "interruptions.json"
    args = ["--warnings", "4", "--copy-rate", "1000", "--shards", "32", "--trials", "1", "--json", str(out)]
    assert main(["bench", "interruptions", *args]) == 0
    rows = json.loads(out.read_text())["rows"]
    assert {r["dataset"] for r in rows} == {"replicas-3", "erasure-4+2"}
    assert all("bound_s" in r for r in rows)
