"""Segment streams: a piece's bytes cut and checked as they arrive, and several streams read at once.

:func:`checked_segments` turns a byte stream (a local file, a peer's response) into the piece's
segments, each checked against the piece's record before it is passed on; :func:`zip_parallel`
reads several such streams at once, each in its own thread a few segments ahead, and hands them
over segment by segment (the ``k`` fragments of a decode or a rebuild). Memory: ``depth``
segments per stream, whatever the piece's size.
"""

from __future__ import annotations

import queue
import threading
from collections.abc import Generator, Iterable, Iterator, Sequence
from typing import Any

from dataplane.agent.segments import resegment, segment_sum
from dataplane.agent.storing import ChecksumError, PieceRecord

_END = object()


class ShortStreamError(ChecksumError):
    """A stream that ended before (or ran past) the segments it promised."""


def checked_segments(chunks: Iterable[bytes], record: PieceRecord, segments: range, what: str) -> Iterator[bytes]:
    """Segments ``segments`` of a piece, from a byte stream that starts at the first one's offset.

    Every segment is checked against ``record.sums`` before it is yielded: a bad one raises
    :class:`~dataplane.agent.storing.ChecksumError` and is never passed on.
    """
    j = segments.start
    for seg in resegment(chunks, record.unit):
        if j >= segments.stop:
            raise ShortStreamError(f"{what}: more bytes than segments {segments.start}-{segments.stop - 1}")
        if segment_sum(seg) != record.sums[j]:
            raise ChecksumError(f"{what}: segment {j} does not match its checksum")
        yield seg
        j += 1
    if j != segments.stop:
        raise ShortStreamError(f"{what}: stream ended at segment {j} of {segments.start}-{segments.stop - 1}")


def zip_parallel(streams: Sequence[Iterator[bytes]], *, depth: int = 4) -> Generator[list[bytes], None, None]:
    """One item of every stream at a time, the streams read concurrently (``depth`` items ahead each).

    Stops at the shortest stream; an exception in any stream is raised here. Closing the
    generator stops the readers.
    """
    stop = threading.Event()
    queues: list[queue.Queue[Any]] = [queue.Queue(maxsize=depth) for _ in streams]

    def pump(stream: Iterator[bytes], q: queue.Queue[Any]) -> None:
        try:
            for item in stream:
                while not stop.is_set():
                    try:
                        q.put(item, timeout=0.1)
                        break
                    except queue.Full:
                        continue
                if stop.is_set():
                    return
            q.put(_END)
        except BaseException as exc:  # handed to the consumer, raised there
            q.put(exc)
        finally:
            close = getattr(stream, "close", None)
            if close is not None:
                close()

    threads = [
        threading.Thread(target=pump, args=(s, q), daemon=True, name="kbl-segment-stream") for s, q in zip(streams, queues, strict=True)
    ]
    for t in threads:
        t.start()
    try:
        while True:
            row = []
            for q in queues:
                item = q.get()
                if item is _END:
                    return
                if isinstance(item, BaseException):
                    raise item
                row.append(item)
            yield row
    finally:
        stop.set()
        for q in queues:  # unblock a pump waiting on a full queue
            while not q.empty():
                try:
                    q.get_nowait()
                except queue.Empty:
                    break
