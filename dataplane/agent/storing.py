"""Pieces on disk: atomic writes, checksum records, verification and quarantine.

Every piece reaches its final name the way storage systems do it (Ceph, Swift): the bytes go to
a temporary file under ``<root>/.kbl-tmp`` while their SHA-256 is computed, the file is fsynced,
its checksum record is written (temp, fsync, rename) and only then the data is renamed to its
final name and the directory fsynced. A crash at any point leaves either the old state or the
new one, plus a temporary file that the next start removes. A write that would pass the quota
or that meets ``ENOSPC`` removes its temporary file and raises :class:`DiskFullError`: nothing
half-written remains.
"""

from __future__ import annotations

import contextlib
import errno
import hashlib
import os
import shutil
import threading
import time
import uuid
from array import array
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import orjson

from dataplane.agent.layouts import STAGING, Layout, parse_sum_name
from dataplane.agent.segments import SEGMENT_BYTES, SEGMENT_HASH, Geometry, SegmentHasher, SegmentMismatch, pack, segment_sum, unpack
from topology.errors import KblError
from topology.holdings import REPLICA


class AgentError(KblError):
    """Something the node agent could not do (the root of its exceptions)."""


class DiskFullError(AgentError):
    """No room for a piece (the filesystem said ENOSPC or the agent's quota is reached)."""


class ChecksumError(AgentError):
    """Bytes that do not match the checksum they were promised with."""


class CorruptPieceError(ChecksumError):
    """A piece on disk whose segment ``segment`` no longer matches its record (bit rot, a torn write)."""

    def __init__(self, path: Path, segment: int) -> None:
        super().__init__(f"{path.name}: segment {segment} does not match its checksum")
        self.path = path
        self.segment = segment


@dataclass(frozen=True, slots=True)
class PieceRecord:
    """The checksum record of a piece, fixed at hydration.

    ``shard_bytes`` is the original shard length (equal to ``size`` for a replica; the length the
    fragments decode back to for an erasure fragment). ``scheme`` names the erasure backend and
    ``k+m`` (empty for a replica). ``segment_bytes`` is the shard's segment size, ``unit`` the
    length of one segment in this piece's file (the segment itself for a replica, one fragment
    segment for a fragment) and ``sums`` the xxh3-64 of every segment of the file
    (:mod:`dataplane.agent.segments`): what every read checks.

    ``sha256`` is the SHA-256 of the whole shard when it was computed or promised at ingest (a
    replica's own bytes; the shard a fragment was encoded from), ``md5`` the source's MD5 when the
    source promised only that: one cryptographic digest per byte stream, never two.
    """

    sha256: str
    size: int
    shard_bytes: int
    scheme: str = ""
    segment_bytes: int = SEGMENT_BYTES
    unit: int = SEGMENT_BYTES
    sums: array[int] = field(default_factory=lambda: array("Q"))
    md5: str = ""

    @property
    def geometry(self) -> Geometry:
        return Geometry(self.size, self.unit)

    def to_dict(self) -> dict[str, Any]:
        return {
            "sha256": self.sha256,
            "md5": self.md5,
            "size": self.size,
            "shardBytes": self.shard_bytes,
            "scheme": self.scheme,
            "segmentBytes": self.segment_bytes,
            "unit": self.unit,
            "hash": SEGMENT_HASH,
            "sums": pack(self.sums),
            "at": time.time(),
        }

    def to_json(self) -> bytes:
        return orjson.dumps(self.to_dict())

    @classmethod
    def from_dict(cls, data: Any) -> PieceRecord:
        """A record from its JSON form; :class:`ValueError` for one without a segment table."""
        if data.get("hash") != SEGMENT_HASH or "sums" not in data:
            raise ValueError("a record without a segment table (written before segments): the piece is hydrated again")
        record = cls(
            sha256=str(data.get("sha256") or ""),
            size=int(data["size"]),
            shard_bytes=int(data.get("shardBytes", data["size"])),
            scheme=str(data.get("scheme") or ""),
            segment_bytes=int(data["segmentBytes"]),
            unit=int(data["unit"]),
            sums=unpack(str(data["sums"])),
            md5=str(data.get("md5") or ""),
        )
        if len(record.sums) != record.geometry.count:
            raise ValueError(f"{len(record.sums)} segment sums for {record.geometry.count} segments")
        return record

    @classmethod
    def from_json(cls, raw: bytes) -> PieceRecord:
        return cls.from_dict(orjson.loads(raw))


def fsync_dir(path: Path) -> None:
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


class PieceWriter:
    """A piece being written under a temporary name (use :meth:`Store.writer`).

    Every chunk is hashed per segment of ``unit`` bytes (checked against ``expected_sums`` as it
    arrives, when the sender gave its table) and, when ``digest`` names one, by that one
    cryptographic digest (``"sha256"`` or ``"md5"``, what the source promised).
    """

    def __init__(
        self, store: Store, tmp: Path, *, unit: int = SEGMENT_BYTES, digest: str = "sha256", expected_sums: array[int] | None = None
    ) -> None:
        self.store = store
        self.tmp = tmp
        self.unit = unit
        self.digest = digest
        self.hash: Any = hashlib.sha256() if digest == "sha256" else hashlib.md5(usedforsecurity=False) if digest == "md5" else None
        self.segments = SegmentHasher(unit, expected_sums)
        self.size = 0
        self._file = open(tmp, "wb")  # noqa: SIM115 - closed by commit/abort
        self.done = False

    def write(self, chunk: bytes | memoryview) -> None:
        self.store.reserve(len(chunk))
        self.size += len(chunk)
        try:
            self.segments.update(chunk)
        except SegmentMismatch as exc:
            raise ChecksumError(f"{self.tmp.name}: {exc}") from None
        try:
            self._file.write(chunk)
        except OSError as exc:
            if exc.errno in (errno.ENOSPC, errno.EDQUOT):
                raise DiskFullError(f"no space left writing {self.tmp.name}: {exc}") from None
            raise
        if self.hash is not None:
            self.hash.update(chunk)

    def commit(
        self,
        final: Path,
        sum_path: Path,
        *,
        sha256: str = "",
        md5: str = "",
        shard_bytes: int | None = None,
        scheme: str = "",
        segment_bytes: int = SEGMENT_BYTES,
    ) -> PieceRecord:
        """Make the piece visible under ``final``; :class:`ChecksumError` if it is not what was promised.

        ``sha256``/``md5``: what the bytes must hash to when this writer computes that digest, else
        the shard's digest carried over from the sender (a peer's record, the encoder's source).
        """
        try:
            try:
                sums = self.segments.finish()
            except SegmentMismatch as exc:
                raise ChecksumError(f"{final.name}: {exc}") from None
            computed = self.hash.hexdigest() if self.hash is not None else ""
            if self.digest == "sha256" and sha256 and computed != sha256:
                raise ChecksumError(f"{final.name}: sha256 {computed} != expected {sha256}")
            if self.digest == "md5" and md5 and computed != md5:
                raise ChecksumError(f"{final.name}: md5 {computed} != source ETag {md5}")
            if self.digest == "sha256":
                sha256 = computed
            elif self.digest == "md5":
                md5 = computed
            self._file.flush()
            os.fsync(self._file.fileno())
            self._file.close()
            record = PieceRecord(
                sha256,
                self.size,
                self.size if shard_bytes is None else shard_bytes,
                scheme,
                segment_bytes=segment_bytes,
                unit=self.unit,
                sums=array("Q", sums),
                md5=md5,
            )
            final.parent.mkdir(parents=True, exist_ok=True)
            sum_path.parent.mkdir(parents=True, exist_ok=True)
            self.store.write_atomic(sum_path, record.to_json())
            os.replace(self.tmp, final)
            fsync_dir(final.parent)
            self.done = True
            self.store.settle(self.size, self.size)
            return record
        except OSError as exc:
            self.abort()
            if exc.errno in (errno.ENOSPC, errno.EDQUOT):
                raise DiskFullError(f"no space left committing {final.name}: {exc}") from None
            raise
        except BaseException:
            self.abort()
            raise

    def abort(self) -> None:
        if self.done:
            return
        self.done = True
        with contextlib.suppress(OSError):
            self._file.close()
        with contextlib.suppress(FileNotFoundError):
            self.tmp.unlink()
        self.store.settle(self.size, 0)


class Store:
    """One agent's pieces on disk (see :mod:`dataplane.agent.layouts` for the layout).

    ``capacity_bytes`` (0: the filesystem's size) bounds ``used_bytes``; a write past it raises
    :class:`DiskFullError` before a byte is written over the line.
    """

    def __init__(self, layout: Layout, *, capacity_bytes: int = 0) -> None:
        self.layout = layout
        self.capacity_bytes = capacity_bytes
        layout.root.mkdir(parents=True, exist_ok=True)
        self._lock = threading.Lock()
        self.clean_tmp()
        self.used_bytes = self._measure()

    # ------------------------------------------------------------------ space
    def clean_tmp(self) -> int:
        """Remove copies left by a crash; returns how many."""
        tmp = self.layout.tmp_dir
        tmp.mkdir(parents=True, exist_ok=True)
        count = 0
        for leftover in tmp.iterdir():
            with contextlib.suppress(OSError):
                leftover.unlink()
                count += 1
        # Fragments staged for peers are known only to the process that staged them: its successor
        # starts without them (a peer that still needs one encodes or rebuilds it).
        shutil.rmtree(self.layout.root / STAGING, ignore_errors=True)
        return count

    def _measure(self) -> int:
        total = 0
        for dirpath, _dirs, files in os.walk(self.layout.root):
            for f in files:
                with contextlib.suppress(OSError):
                    total += os.stat(os.path.join(dirpath, f)).st_size
        return total

    def capacity(self) -> tuple[int, int]:
        """``(capacityBytes, freeBytes)`` as reported in the holdings."""
        disk = shutil.disk_usage(self.layout.root)
        if self.capacity_bytes:
            return self.capacity_bytes, max(0, min(disk.free, self.capacity_bytes - self.used_bytes))
        return disk.total, disk.free

    def reserve(self, nbytes: int) -> None:
        with self._lock:
            if self.capacity_bytes and self.used_bytes + nbytes > self.capacity_bytes:
                raise DiskFullError(f"quota of {self.capacity_bytes} bytes reached ({self.used_bytes} used)")
            self.used_bytes += nbytes

    def settle(self, reserved: int, kept: int) -> None:
        with self._lock:
            self.used_bytes -= reserved - kept

    # ----------------------------------------------------------------- writing
    @contextlib.contextmanager
    def writer(
        self, *, unit: int = SEGMENT_BYTES, digest: str = "sha256", expected_sums: array[int] | None = None
    ) -> Iterator[PieceWriter]:
        """A temporary piece; committed by :meth:`PieceWriter.commit`, else removed."""
        tmp = self.layout.tmp_dir / f"{uuid.uuid4().hex}.part"
        try:
            w = PieceWriter(self, tmp, unit=unit, digest=digest, expected_sums=expected_sums)
        except OSError as exc:
            if exc.errno in (errno.ENOSPC, errno.EDQUOT):
                raise DiskFullError(str(exc)) from None
            raise
        try:
            yield w
        finally:
            w.abort()

    def write_atomic(self, path: Path, data: bytes) -> None:
        """Small files (records, uid): temp name beside the target, fsync, rename, dir fsync."""
        path.parent.mkdir(parents=True, exist_ok=True)
        tmp = path.with_name(f".{path.name}.{uuid.uuid4().hex}.tmp")
        try:
            with open(tmp, "wb") as f:
                f.write(data)
                f.flush()
                os.fsync(f.fileno())
            os.replace(tmp, path)
            fsync_dir(path.parent)
        except BaseException:
            with contextlib.suppress(FileNotFoundError):
                tmp.unlink()
            raise

    # ----------------------------------------------------------------- reading
    def record(self, ns: str, name: str, shard: int, key: str) -> PieceRecord | None:
        try:
            return PieceRecord.from_json(self.layout.sum_path(ns, name, shard, key).read_bytes())
        except (OSError, ValueError, KeyError, TypeError):
            return None

    def scan(self, ns: str, name: str, shard_name: Any) -> dict[tuple[int, str], PieceRecord]:
        """Pieces of a DataSet folder whose data file exists with the recorded size.

        ``shard_name`` maps a shard index to its file name (``DataSetSpec.shard_name``).
        """
        out: dict[tuple[int, str], PieceRecord] = {}
        sums = self.layout.sums_dir(ns, name)
        if not sums.is_dir():
            return out
        for entry in sums.iterdir():
            parsed = parse_sum_name(entry.name)
            if parsed is None:
                continue
            shard, key = parsed
            record = self.record(ns, name, shard, key)
            if record is None:
                continue
            try:
                path = self.layout.piece_path(ns, name, shard_name(shard), shard, key)
                if path.stat().st_size == record.size:
                    out[(shard, key)] = record
            except (OSError, ValueError, IndexError, KeyError):
                continue
        return out

    def verify(self, ns: str, name: str, shard_name: str, shard: int, key: str) -> bool:
        """Re-read a piece whole and check every segment against its record."""
        record = self.record(ns, name, shard, key)
        if record is None:
            return False
        path = self.layout.piece_path(ns, name, shard_name, shard, key)
        try:
            for _ in read_segments(path, record, range(record.geometry.count)):
                pass
        except (CorruptPieceError, OSError):
            return False
        return True

    # ---------------------------------------------------------------- removing
    def remove(self, ns: str, name: str, shard_name: str, shard: int, key: str) -> None:
        """Delete a piece (data first, then its record)."""
        path = self.layout.piece_path(ns, name, shard_name, shard, key)
        with contextlib.suppress(FileNotFoundError):
            size = path.stat().st_size
            path.unlink()
            self.settle(size, 0)
        with contextlib.suppress(FileNotFoundError):
            self.layout.sum_path(ns, name, shard, key).unlink()

    def quarantine(self, ns: str, name: str, shard_name: str, shard: int, key: str) -> Path | None:
        """Move a bad piece out of its final name (kept once for a post-mortem); its record goes."""
        path = self.layout.piece_path(ns, name, shard_name, shard, key)
        target = self.layout.quarantine_dir(ns, name) / f"{shard}.{key}"
        target.parent.mkdir(parents=True, exist_ok=True)
        moved: Path | None = None
        try:
            os.replace(path, target)
            moved = target
        except FileNotFoundError:
            pass
        with contextlib.suppress(FileNotFoundError):
            self.layout.sum_path(ns, name, shard, key).unlink()
        return moved

    def remove_dataset(self, ns: str, name: str) -> None:
        folder = self.layout.dataset_dir(ns, name)
        if folder.exists():
            shutil.rmtree(folder, ignore_errors=True)
            with self._lock:
                pass
            self.used_bytes = self._measure()

    def dataset_uid(self, ns: str, name: str) -> str:
        try:
            return self.layout.uid_file(ns, name).read_text().strip()
        except OSError:
            return ""

    def set_dataset_uid(self, ns: str, name: str, uid: str) -> None:
        self.write_atomic(self.layout.uid_file(ns, name), uid.encode())

    def local_datasets(self) -> list[tuple[str, str]]:
        """``(namespace, name)`` of every DataSet folder on disk (those with a uid file)."""
        out = []
        root = self.layout.root
        for ns_dir in root.iterdir() if root.is_dir() else []:
            if not ns_dir.is_dir() or ns_dir.name.startswith("."):
                continue
            for ds_dir in ns_dir.iterdir():
                if (ds_dir / ".kbl" / "uid").exists():
                    out.append((ns_dir.name, ds_dir.name))
        return out


def read_segments(path: Path, record: PieceRecord, segments: range) -> Iterator[tuple[int, bytes]]:
    """Segments ``segments`` of a piece file, each checked against its record before it is yielded.

    Raises :class:`CorruptPieceError` at the first segment that does not match (nothing of that
    segment is yielded) and :class:`OSError` when the file is gone or short.
    """
    geometry = record.geometry
    fd = os.open(path, os.O_RDONLY)
    try:
        for j in segments:
            start, end = geometry.bounds(j)
            data = os.pread(fd, end - start, start)
            if len(data) != end - start or segment_sum(data) != record.sums[j]:
                raise CorruptPieceError(path, j)
            yield j, data
    finally:
        os.close(fd)


__all__ = [
    "REPLICA",
    "AgentError",
    "ChecksumError",
    "CorruptPieceError",
    "DiskFullError",
    "PieceRecord",
    "PieceWriter",
    "Store",
    "fsync_dir",
    "read_segments",
]
