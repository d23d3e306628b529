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


def broken_copy(store: Store, resume: str, origin: str, chunks: list[bytes]) -> None:
    """A resumable copy that writes ``chunks`` and then breaks off with a source error."""
    from dataplane.agent.sources import SourceError

    with store.writer(unit=100, resume=resume, origin=origin) as w:
        for chunk in chunks:
            w.write(chunk)
        raise SourceError("connection reset")


def test_a_copy_that_breaks_off_is_resumed_after_its_last_checkpoint_and_only_by_the_same_origin(tmp_path: Path) -> None:
    """Checkpoints every 4 segments; the copy breaks off (a source error) after 10: the next writer
    of the same piece and origin starts after segment 8, the SHA-256 still covers every byte; a
    writer of another origin (the object changed) starts over."""
    from dataplane.agent.sources import SourceError

    store = Store(Layout(tmp_path), checkpoint_bytes=4 * 100)
    data = bytes(range(256)) * 5  # 1,280 bytes: 13 segments of 100
    final = store.layout.piece_path("ml", "ds", "part-0", 0, "replica")
    sums = store.layout.sum_path("ml", "ds", 0, "replica")
    with pytest.raises(SourceError):  # segments arrive one by one; checkpoints after 4 and 8
        broken_copy(store, "ml~ds~u~0~replica", "v1", [data[i : i + 100] for i in range(0, 1000, 100)])
    with store.writer(unit=100, resume="ml~ds~u~0~replica", origin="v1") as w:
        assert w.resumed_segments == 8
        assert w.size == 800
        w.write(data[800:])
        record = w.commit(final, sums, sha256=hashlib.sha256(data).hexdigest())
    assert final.read_bytes() == data
    assert record.sha256 == hashlib.sha256(data).hexdigest()
    assert list(store.layout.tmp_dir.iterdir()) == []
    with pytest.raises(SourceError):
        broken_copy(store, "ml~ds~u~1~replica", "v1", [data[:500]])
    with store.writer(unit=100, resume="ml~ds~u~1~replica", origin="v2") as w:
        assert w.resumed_segments == 0, "another version of the object: nothing of the old one is kept"


def test_a_checkpointed_partial_with_a_torn_segment_is_resumed_only_up_to_its_last_good_segment(tmp_path: Path) -> None:
    from dataplane.agent.sources import SourceError

    store = Store(Layout(tmp_path), checkpoint_bytes=2 * 100)
    data = bytes(range(200)) * 4
    with pytest.raises(SourceError):
        broken_copy(store, "p", "o", [data[:700]])
    partial = store.layout.tmp_dir / "p.part"
    raw = bytearray(partial.read_bytes())
    raw[250] ^= 0x01  # segment 2 rotted on disk after its checkpoint
    partial.write_bytes(bytes(raw))
    restarted = Store(Layout(tmp_path), checkpoint_bytes=2 * 100)  # a new process: the partial is kept
    with restarted.writer(unit=100, resume="p", origin="o") as w:
        assert w.resumed_segments == 2
        w.write(data[200:])
        w.commit(restarted.layout.piece_path("ml", "ds", "x", 0, "replica"), restarted.layout.sum_path("ml", "ds", 0, "replica"))
    assert restarted.layout.piece_path("ml", "ds", "x", 0, "replica").read_bytes() == data
