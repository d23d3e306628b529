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
        self,
        store: Store,
        tmp: Path,
        *,
        unit: int = SEGMENT_BYTES,
        digest: str = "sha256",
        expected_sums: array[int] | None = None,
        origin: str = "",
        checkpoint_segments: int = 64,
    ) -> None:
        self.store = store
        self.tmp = tmp
        self.unit = unit
        self.digest = digest
        self.hash: Any = hashlib.sha256() if digest == "sha256" else hashlib.md5(usedforsecurity=False) if digest == "md5" else None
        self.segments = SegmentHasher(unit, expected_sums)
        self.size = 0
        #: Where the bytes come from, exactly (a source object's version, a sender's segment table):
        #: a partial copy is resumed only by a copy of the same origin. Empty: not resumable.
        self.origin = origin
        self.checkpoint_segments = checkpoint_segments
        #: Segments taken over from an earlier attempt's partial copy (the producer starts after them).
        self.resumed_segments = 0
        self.done = False
        self._file: Any = None
        if origin:
            self._resume(expected_sums)
        if self._file is None:
            self._file = open(tmp, "wb")  # noqa: SIM115 - closed by commit/abort

    @property
    def progress_path(self) -> Path:
        return self.tmp.with_name(self.tmp.name + ".json")

    def _resume(self, expected: array[int] | None) -> None:
        """Take over an earlier attempt's partial copy of the same origin, up to its last good checkpointed segment."""
        try:
            progress: Any = orjson.loads(self.progress_path.read_bytes())
            on_disk = self.tmp.stat().st_size
        except (OSError, ValueError):
            return
        if progress.get("origin") != self.origin or progress.get("unit") != self.unit or progress.get("digest") != self.digest:
            return
        sums = unpack(str(progress.get("sums") or ""))
        f = open(self.tmp, "r+b")  # noqa: SIM115 - kept as the writer's file
        good = 0
        for j, value in enumerate(sums):
            data = os.pread(f.fileno(), self.unit, j * self.unit)
            if (
                len(data) != self.unit
                or segment_sum(data) != value
                or (expected is not None and (j >= len(expected) or expected[j] != value))
            ):
                break
            if self.hash is not None:
                self.hash.update(data)
            good += 1
        self.size = good * self.unit
        f.truncate(self.size)
        f.seek(self.size)
        self.store.settle(on_disk, self.size)  # the partial was counted whole (measured at start, or reserved as written)
        self.segments.sums = list(sums[:good])
        self.resumed_segments = good
        self._file = f

    def _checkpoint(self) -> None:
        """Make the segments written so far survive a crash: data fsynced, then the progress record."""
        self._file.flush()
        os.fsync(self._file.fileno())
        record = {"origin": self.origin, "unit": self.unit, "digest": self.digest, "sums": pack(self.segments.sums)}
        self.store.write_atomic(self.progress_path, orjson.dumps(record))

    def write(self, chunk: bytes | memoryview) -> None:
        before = len(self.segments.sums)
        self._write(chunk)
        if self.origin and len(self.segments.sums) // self.checkpoint_segments > before // self.checkpoint_segments:
            self._checkpoint()

    def _write(self, chunk: bytes | memoryview) -> None:
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
            with contextlib.suppress(FileNotFoundError):
                self.progress_path.unlink()
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

    def commit_like(self, other: PieceRecord, final: Path, sum_path: Path) -> PieceRecord:
        """Commit a copy of the piece ``other`` describes (a peer's, or a sibling fragment's for a
        rebuild): its shard digest, sizes and scheme carried over, the segment table this writer checked."""
        return self.commit(
            final,
            sum_path,
            sha256=other.sha256,
            md5=other.md5,
            shard_bytes=other.shard_bytes,
            scheme=other.scheme,
            segment_bytes=other.segment_bytes,
        )

    def abort(self, *, keep: bool = False) -> None:
        """Drop the copy; with ``keep`` (a resumable copy that broke off) its checkpointed part stays for the next attempt."""
        if self.done:
            return
        self.done = True
        with contextlib.suppress(OSError):
            self._file.close()
        if keep and self.origin and self.progress_path.exists():
            return
        for path in (self.tmp, self.progress_path):
            with contextlib.suppress(FileNotFoundError):
                path.unlink()
        self.store.settle(self.size, 0)


class Store:
    """One agent's pieces on disk (see :mod:`dataplane.agent.layouts` for the layout).

    ``capacity_bytes`` (0: the filesystem's size) bounds ``used_bytes``; a write past it raises
    :class:`DiskFullError` before a byte is written over the line.
    """

    def __init__(self, layout: Layout, *, capacity_bytes: int = 0, checkpoint_bytes: int = 64 << 20) -> None:
        self.layout = layout
        self.capacity_bytes = capacity_bytes
        self.checkpoint_bytes = checkpoint_bytes
        layout.root.mkdir(parents=True, exist_ok=True)
        self._lock = threading.Lock()
        self.clean_tmp()
        self.used_bytes = self._measure()

    # ------------------------------------------------------------------ space
    def clean_tmp(self) -> int:
        """Remove copies left by a crash, except checkpointed ones (resumed by the next copy of the same piece); returns how many."""
        tmp = self.layout.tmp_dir
        tmp.mkdir(parents=True, exist_ok=True)
        count = 0
        for leftover in tmp.iterdir():
            resumable = leftover.name.endswith(".part") and leftover.with_name(leftover.name + ".json").exists()
            progress = leftover.name.endswith(".part.json") and leftover.with_name(leftover.name.removesuffix(".json")).exists()
            if resumable or progress:
                continue
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
        self,
        *,
        unit: int = SEGMENT_BYTES,
        digest: str = "sha256",
        expected_sums: array[int] | None = None,
        resume: str = "",
        origin: str = "",
    ) -> Iterator[PieceWriter]:
        """A temporary piece; committed by :meth:`PieceWriter.commit`, else removed.

        ``resume`` (a name stable across attempts: DataSet uid, shard, piece) and ``origin`` make the
        copy resumable: it is checkpointed as it goes, a copy that breaks off with a
        :class:`~dataplane.agent.storing.AgentError` (a source or peer error) keeps its checkpointed
        part, and the next writer of the same name and origin starts after it
        (:attr:`PieceWriter.resumed_segments`). A disk-full error or anything else drops it.
        """
        name = f"{resume}.part" if resume and origin else f"{uuid.uuid4().hex}.part"
        tmp = self.layout.tmp_dir / name
        try:
            w = PieceWriter(
                self,
                tmp,
                unit=unit,
                digest=digest,
                expected_sums=expected_sums,
                origin=origin if resume else "",
                checkpoint_segments=max(1, self.checkpoint_bytes // max(1, unit)),
            )
        except OSError as exc:
            if exc.errno in (errno.ENOSPC, errno.EDQUOT):
                raise DiskFullError(str(exc)) from None
            raise
        keep = False
        try:
            yield w
        except DiskFullError:
            raise
        except AgentError:
            keep = True
            raise
        finally:
            w.abort(keep=keep)

    def partials(self) -> list[tuple[str, Path]]:
        """``(resume name, data file)`` of the checkpointed partial copies kept for a later attempt."""
        tmp = self.layout.tmp_dir
        out = []
        for progress in tmp.glob("*.part.json") if tmp.is_dir() else []:
            data = progress.with_name(progress.name.removesuffix(".json"))
            out.append((data.name.removesuffix(".part"), data))
        return out

    def drop_partial(self, data: Path) -> None:
        """Remove a partial copy nobody will resume (its DataSet is gone or re-created)."""
        with contextlib.suppress(FileNotFoundError):
            size = data.stat().st_size
            data.unlink()
            self.settle(size, 0)
        with contextlib.suppress(FileNotFoundError):
            data.with_name(data.name + ".json").unlink()

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
