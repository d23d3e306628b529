"""``kbl bench data --quick`` end to end: agents as processes, every figure beside its floor.

The targets are not checked here (tiny shards, a shared machine): the figures' structure and
invariants are. Each figure was measured, each floor was measured on the same bytes in the
same run, ratios are positive, and the bytes came from where the scenario says (a peer when the
source was moved away, S3 through the counting proxy).
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from benchmarks import data, volume

MIB = 1 << 20


@pytest.mark.timeout(600)
def test_quick_run_reports_every_figure_beside_a_floor_on_the_same_bytes(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    import argparse

    parser = argparse.ArgumentParser()
    data.configure(parser)
    out = tmp_path / "data.json"
    code = data.run(parser.parse_args(["--quick", "--no-targets", "--json", str(out), "--work", str(tmp_path / "work")]))
    assert code == 0
    report = json.loads(out.read_text())
    figures = report["figures"]
    shard_bytes, shards = report["shard_bytes"], report["shards"]
    volume_keys = {"volume_local", "volume_remote", "volume_erasure"}
    assert set(figures) == set(data.figures_template(shard_bytes, report["s3_bytes"])) | volume_keys
    cannot_mount = volume.unavailable()
    for key, fig in figures.items():
        if key in volume_keys and cannot_mount:  # reads through the CSI volume need root, /dev/fuse, pyfuse3
            assert fig["note"] == f"skipped ({cannot_mount})", key
            continue
        assert fig["ratio"] is not None, (key, fig["note"])
        assert fig["ratio"] > 0, key
        assert fig["value"] > 0, key
        assert fig["floor"] > 0, key
        assert fig["pass"] in ((True, False) if fig["target"] is not None else (None,)), key
        assert not fig["note"], (key, fig["note"])
    # The encode beside its second floor: the same agent figure, a floor with the fragments' writes.
    assert figures["encode_io"]["value"] == figures["encode"]["value"]
    assert figures["encode_io"]["floor"] < figures["encode"]["floor"]
    # Every zone peer's fragment came from the zone's encoder: streamed as encoded, or staged on its disk
    # (the quick run's shards are a few segments: either may happen); with streaming off, all staged.
    per_run = shards * (data.K + data.M - 1)
    assert figures["encode"]["streamed"] + figures["encode"]["staged"] == per_run
    assert (figures["encode_staged"]["staged"], figures["encode_staged"]["streamed"]) == (per_run, 0)
    assert figures["encode_staged"]["floor"] == figures["encode_ram"]["floor"] == figures["encode"]["floor"]
    assert figures["encode_ram"]["bytes"] == shard_bytes  # one shard on /dev/shm
    for key in ("hydration_path", "hydration_peer", "encode", "rebuild", "encode_staged"):
        assert figures[key]["bytes"] == figures[key]["floor_bytes"] == shards * shard_bytes, key
        assert figures[key]["ratio"] == pytest.approx(figures[key]["value"] / figures[key]["floor"], rel=1e-9)
    # Hydration from a peer came from the peer (the source was renamed away).
    assert figures["hydration_peer"]["peer_zone_bytes_metric"] >= shards * shard_bytes
    assert figures["hydration_path"]["source_bytes_metric"] >= shards * shard_bytes
    assert figures["rebuild"]["floor_parts"]["fragment_bytes_fetched"] >= shards * shard_bytes  # k fragments of each shard
    # Repair: two receivers, one lost piece each, the bound is the slowest receiver's.
    repair = figures["repair"]
    assert repair["bytes"] == 2 * shard_bytes
    assert sorted(repair["pieces_per_receiver"].values()) == [1, 1]
    assert repair["floor"] == pytest.approx(shard_bytes / (repair["bandwidth_MBps_per_agent"] * 1e6))
    assert repair["peer_bytes_metric"] >= 2 * shard_bytes
    assert 0 < figures["rss_replicated"]["value"] < 4096
    assert 0 < figures["rss_erasure"]["value"] < 4096
    s3 = figures["s3_bytes"]
    assert s3["zones"] == 2
    assert s3["floor"] == 2
    assert s3["s3_get_bytes"] >= report["s3_bytes"]  # at least one whole shard was read from S3
    assert s3["value"] == pytest.approx(s3["s3_get_bytes"] / report["s3_bytes"])
    printed = capsys.readouterr().out
    assert "kbl bench data" in printed
    assert "PASS" in printed or "MISS" in printed
