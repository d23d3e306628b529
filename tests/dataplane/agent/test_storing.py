"""Pieces on disk: atomic writes, checksum records, quarantine, a full disk (real files)."""

from __future__ import annotations

import hashlib
from pathlib import Path

import pytest

from dataplane.agent.layouts import Layout
from dataplane.agent.storing import ChecksumError, DiskFullError, Store


def test_a_committed_piece_has_its_bytes_and_record_and_no_temporary_file(tmp_path: Path) -> None:
    store = Store(Layout(tmp_path))
    final = store.layout.piece_path("ml", "ds", "part-1", 1, "replica")
    data = b"x" * 3000 + b"y"
    with store.writer() as w:
        w.write(data[:1000])
        w.write(data[1000:])
        record = w.commit(final, store.layout.sum_path("ml", "ds", 1, "replica"), sha256=hashlib.sha256(data).hexdigest())
    assert final.read_bytes() == data
    assert record.sha256 == hashlib.sha256(data).hexdigest()
    assert store.scan("ml", "ds", lambda i: f"part-{i}") == {(1, "replica"): record}
    assert list(store.layout.tmp_dir.iterdir()) == []
    assert store.verify("ml", "ds", "part-1", 1, "replica")


def test_a_checksum_mismatch_leaves_nothing_under_the_final_name(tmp_path: Path) -> None:
    store = Store(Layout(tmp_path))
    final = store.layout.piece_path("ml", "ds", "0", 0, "replica")
    with store.writer() as w:
        w.write(b"abc")
        with pytest.raises(ChecksumError):
            w.commit(final, store.layout.sum_path("ml", "ds", 0, "replica"), sha256="0" * 64)
    assert not final.exists()
    assert list(store.layout.tmp_dir.iterdir()) == []


def test_a_full_disk_raises_and_removes_the_partial_copy(tmp_path: Path) -> None:
    store = Store(Layout(tmp_path), capacity_bytes=1000)
    final = store.layout.piece_path("ml", "ds", "0", 0, "replica")
    with store.writer() as w:
        w.write(b"a" * 800)
        with pytest.raises(DiskFullError):
            w.write(b"b" * 800)
    assert not final.exists()
    assert list(store.layout.tmp_dir.iterdir()) == []
    assert store.used_bytes == 0


def test_leftover_temporary_files_are_removed_at_start(tmp_path: Path) -> None:
    (tmp_path / ".kbl-tmp").mkdir()
    (tmp_path / ".kbl-tmp" / "dead.part").write_bytes(b"half")
    store = Store(Layout(tmp_path))
    assert list(store.layout.tmp_dir.iterdir()) == []


def test_a_flipped_bit_fails_verification_and_quarantine_moves_the_piece_out(tmp_path: Path) -> None:
    store = Store(Layout(tmp_path))
    final = store.layout.piece_path("ml", "ds", "0", 0, "replica")
    with store.writer() as w:
        w.write(b"\x00" * 4096)
        w.commit(final, store.layout.sum_path("ml", "ds", 0, "replica"))
    raw = bytearray(final.read_bytes())
    raw[100] ^= 0x04
    final.write_bytes(bytes(raw))
    assert not store.verify("ml", "ds", "0", 0, "replica")
    moved = store.quarantine("ml", "ds", "0", 0, "replica")
    assert moved is not None
    assert moved.read_bytes() == bytes(raw)
    assert not final.exists()
    assert store.scan("ml", "ds", str) == {}


def test_a_data_file_without_its_record_is_not_ready(tmp_path: Path) -> None:
    store = Store(Layout(tmp_path))
    path = store.layout.piece_path("ml", "ds", "3", 3, "replica")
    path.parent.mkdir(parents=True)
    path.write_bytes(b"orphan")
    assert store.scan("ml", "ds", str) == {}


def test_kbl_agent_is_a_subcommand_of_the_cli(capsys: pytest.CaptureFixture[str]) -> None:
    from kbl.cli import main

    with pytest.raises(SystemExit) as stopped:
        main(["agent", "--help"])
    assert stopped.value.code == 0
    out = capsys.readouterr().out
    for flag in ("--node", "--root", "--bandwidth-mbps", "--scrub-interval-s", "--token-file", "--api-url", "--tls-cert"):
        assert flag in out
