"""Fragments streamed to their zone's holders while the zone's encoder encodes them (Swift's proxy model).

The zone's encoder reads a shard once and encodes it segment by segment (:mod:`.hydrating`). Each
fragment of another holder in its zone is a :class:`LiveFragment`: a bounded queue of encoded
segments that the holder pulls with ``GET .../pieces/{shard}/{key}/live`` (authenticated and
authorized as every piece read, over TLS when on) as they are produced, so the holder's write of
its fragment overlaps the encode and the encoder's disk writes only its own fragment.

**The wire format** (:func:`frame`, :class:`FrameReader`): per segment a 20-byte header
``<index u64, length u32, xxh3-64 u64>`` and the segment's bytes; the receiver checks every segment
against its xxh3 as it arrives (the segment table entry, sent with it) before writing it. The
stream ends with a trailer frame (index ``2**64-1``) carrying the fragment's record as JSON (the
whole segment table, sizes, the shard's digest), sent only once the encoder has checked the shard
against the source's promise: the receiver commits only when the table it checked equals the
record's. A stream that ends any other way (the encoder failed, the connection broke) commits
nothing.

**Bounds.** A live fragment holds at most ``window`` encoded segments not yet sent. The encoder
waits when a holder is that far behind (the holder's disk sets the pace, as a PUT would); a holder
that has not attached when the window first fills, within ``attach_s`` of the encode's start, is
**spilled**: its fragment is written to the encoder's staging area from segment 0 (what the queue
still holds) and the holder copies it from there later, as before streaming. A holder attached and
then silent for ``stall_s`` (dead, or its connection gone) is **dropped**: the encoder stops
producing its fragment and goes on; the holder gets its fragment another way (rebuilt from ``k``
fragments of its zone, or read from the source: :meth:`.hydrating.Hydrator._plans`).
"""

from __future__ import annotations

import struct
import threading
import time
from array import array
from collections import deque
from collections.abc import Generator, Iterable, Iterator
from typing import Literal

from dataplane.agent.segments import segment_sum
from dataplane.agent.storing import AgentError, ChecksumError, PieceRecord

HEADER = struct.Struct("<QIQ")
TRAILER = (1 << 64) - 1
#: A follower's stream sends the segments waiting for it together, up to about this many bytes per write.
BATCH_BYTES = 1 << 20
#: The response header naming the fragment's segment unit (the length of every segment but the last).
UNIT_HEADER = "X-Kbl-Segment-Unit"

State = Literal["open", "done", "dropped", "spilled", "failed"]
Offer = Literal["sent", "spill", "dropped"]


class StreamError(AgentError):
    """A live stream that cannot be followed (none here, already followed, ended early)."""


def frame(index: int, data: bytes, xsum: int) -> bytes:
    """One segment on the wire: header and bytes."""
    return HEADER.pack(index, len(data), xsum) + data


class LiveFragment:
    """One fragment being encoded for one holder: the encoder's side (:meth:`offer`) and the holder's (:meth:`attach`)."""

    def __init__(self, key: str, unit: int, *, window: int, attach_s: float, stall_s: float) -> None:
        self.key = key
        self.unit = unit
        self.window = max(1, window)
        self.attach_deadline = time.monotonic() + attach_s
        self.stall_s = stall_s
        self.cond = threading.Condition()
        self.queue: deque[tuple[int, bytes, int]] = deque()
        self.state: State = "open"
        self.attached = False
        self.produced = 0
        self.sent = 0
        self.sums = array("Q")
        self.size = 0
        self.record: PieceRecord | None = None
        self._progress_at = time.monotonic()

    # ------------------------------------------------------------ the encoder
    def offer(self, data: bytes, xsum: int) -> Offer:
        """Queue the next segment: ``"sent"`` (queued), ``"spill"`` (nobody attached in time: write it
        yourself, :meth:`spill` gives what is queued) or ``"dropped"`` (the holder stalled: stop)."""
        with self.cond:
            while self.state == "open" and len(self.queue) >= self.window:
                now = time.monotonic()
                if not self.attached and now >= self.attach_deadline:
                    return "spill"
                if self.attached and now - self._progress_at > self.stall_s:
                    self._end("dropped")
                    break
                self.cond.wait(0.05)
            if self.state == "dropped":
                return "dropped"
            self.queue.append((self.produced, data, xsum))
            self.sums.append(xsum)
            self.size += len(data)
            self.produced += 1
            self.cond.notify_all()
            return "sent"

    def spill(self) -> list[bytes] | None:
        """Give up streaming (nobody attached): the queued segments, from segment 0, for the staging file;
        ``None`` when the holder attached meanwhile (keep offering). After a spill :meth:`attach` is
        refused: the holder copies the staged file once it is committed."""
        with self.cond:
            if self.attached:
                return None
            self._end("spilled")
            out = [data for _j, data, _s in self.queue]
            self.queue.clear()
            return out

    def finish(self, record: PieceRecord) -> bool:
        """The fragment is complete and checked: the trailer may go. ``False`` when nobody ever attached
        (the caller spills it: :meth:`spill`)."""
        with self.cond:
            if self.state != "open":
                return True
            if not self.attached:
                return False
            self.record = record
            self._end("done")
            return True

    def fail(self) -> None:
        """The encode failed: a follower's stream ends without a trailer (it commits nothing)."""
        with self.cond:
            if self.state == "open":
                self._end("failed")
                self.queue.clear()

    def _end(self, state: State) -> None:
        self.state = state
        if state in ("dropped", "failed"):
            self.queue.clear()
        self.cond.notify_all()

    # ------------------------------------------------------------- the holder
    def attach(self) -> Generator[bytes, None, None]:
        """The stream of frames for the one holder of this fragment; :class:`StreamError` when it cannot be followed."""
        with self.cond:
            if self.attached or self.state != "open":
                raise StreamError(f"fragment {self.key} is {'followed already' if self.attached else self.state}")
            self.attached = True
            self._progress_at = time.monotonic()
            self.cond.notify_all()
        return self._frames()

    def _frames(self) -> Generator[bytes, None, None]:
        finished = False
        try:
            while True:
                with self.cond:
                    while not self.queue and self.state == "open":
                        self.cond.wait(1.0)
                    if self.queue:
                        # Every segment waiting goes in one write (up to ~1 MiB): fewer sends and thread hops per byte.
                        parts: list[bytes] = []
                        batch = 0
                        while self.queue and batch < BATCH_BYTES:
                            j, data, xsum = self.queue.popleft()
                            parts += (HEADER.pack(j, len(data), xsum), data)
                            batch += len(data)
                            self.sent += 1
                        self._progress_at = time.monotonic()
                        self.cond.notify_all()
                        out = b"".join(parts)
                    elif self.state == "done" and self.record is not None:
                        body = self.record.to_json()
                        out = HEADER.pack(TRAILER, len(body), segment_sum(body)) + body
                        finished = True
                    else:
                        raise StreamError(f"fragment {self.key}: the encode {self.state} before the end")
                yield out
                if finished:
                    return
        finally:
            if not finished:
                with self.cond:  # the holder went away (or the encode failed): the encoder stops producing it
                    if self.state == "open":
                        self._end("dropped")


class FrameReader:
    """Frames cut from a byte stream (any chunking): ``(index, data, xsum)`` per segment, then the record.

    Every segment is checked against its xxh3 (and its index against the sequence) before it is
    yielded; :attr:`record` is set by the trailer. Raises :class:`ChecksumError` on a bad segment or
    frame and :class:`StreamError` when the stream ends before its trailer.
    """

    def __init__(self, chunks: Iterable[bytes], what: str) -> None:
        self.chunks = chunks
        self.what = what
        self.record: PieceRecord | None = None

    def __iter__(self) -> Iterator[tuple[bytes, int]]:
        buf = bytearray()
        expect = 0
        need = HEADER.size
        header: tuple[int, int, int] | None = None
        for chunk in self.chunks:
            buf += chunk
            while len(buf) >= need:
                if header is None:
                    header = HEADER.unpack_from(buf)
                    del buf[: HEADER.size]
                    need = header[1]
                    if header[0] != TRAILER and (header[0] != expect or header[1] > (1 << 30)):
                        raise ChecksumError(f"{self.what}: frame {header[0]} where {expect} was due")
                    continue
                index, length, xsum = header
                with memoryview(buf) as view:
                    data = bytes(view[:length])
                del buf[:length]
                header, need = None, HEADER.size
                if segment_sum(data) != xsum:
                    raise ChecksumError(f"{self.what}: segment {index} does not match its checksum")
                if index == TRAILER:
                    try:
                        self.record = PieceRecord.from_json(data)
                    except (ValueError, KeyError, TypeError) as exc:
                        raise ChecksumError(f"{self.what}: bad record: {exc}") from None
                    if buf:
                        raise ChecksumError(f"{self.what}: bytes after the record")
                    return
                expect += 1
                yield data, xsum
        raise StreamError(f"{self.what}: the stream ended at segment {expect}, before its record")
