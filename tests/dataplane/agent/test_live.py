"""Live fragments (:mod:`dataplane.agent.live`): the encoder's side and the holder's, in threads of this process.

The holder here reads the frames straight from :meth:`LiveFragment.attach` (no HTTP: the agents'
route is exercised in ``test_streaming.py``); the encoder is a loop that offers segments as the
agent's does.
"""

from __future__ import annotations

import os
import threading
import time

import pytest

from dataplane.agent.live import FrameReader, LiveFragment, StreamError
from dataplane.agent.segments import segment_sum
from dataplane.agent.storing import ChecksumError, PieceRecord

UNIT = 4096


def segments(n: int) -> list[bytes]:
    return [os.urandom(UNIT) for _ in range(n - 1)] + [os.urandom(UNIT // 3)]


def record_of(parts: list[bytes]) -> PieceRecord:
    from array import array

    size = sum(len(p) for p in parts)
    return PieceRecord("", size, size * 2, "test:2+1", segment_bytes=2 * UNIT, unit=UNIT, sums=array("Q", map(segment_sum, parts)))


def record_seen(reader: FrameReader) -> PieceRecord | None:
    """The record the reader has received so far (read through a call: it changes under another thread)."""
    return reader.record


def test_a_holder_receives_every_segment_checked_and_the_record_only_after_the_encode_finished() -> None:
    parts = segments(40)
    lf = LiveFragment("1", UNIT, window=4, attach_s=5, stall_s=5)
    reader = FrameReader(lf.attach(), "test")
    got: list[bytes] = []
    seen_queue: list[int] = []
    holder = threading.Thread(target=lambda: got.extend(data for data, _sum in reader))
    holder.start()
    for data in parts:
        assert lf.offer(data, segment_sum(data)) == "sent"
        seen_queue.append(len(lf.queue))
    time.sleep(0.2)
    assert record_seen(reader) is None, "no record before the encoder finished: the holder cannot commit"
    assert lf.finish(record_of(parts))
    holder.join(10)
    assert got == parts
    assert record_seen(reader) == record_of(parts)
    assert max(seen_queue) <= 4, "never more than the window waits in memory"


def test_an_encoder_waits_for_a_slow_holder_instead_of_buffering_past_its_window() -> None:
    parts = segments(12)
    lf = LiveFragment("1", UNIT, window=3, attach_s=5, stall_s=5)
    frames = lf.attach()
    done = threading.Event()

    def encode() -> None:
        for data in parts:
            lf.offer(data, segment_sum(data))
        done.set()

    threading.Thread(target=encode, daemon=True).start()
    time.sleep(0.3)
    assert not done.is_set(), "the encoder is held back by the holder that has read nothing"
    assert len(lf.queue) == 3
    while lf.sent < 12:  # a read takes every segment waiting (several per write)
        next(frames)
    assert done.wait(5)


def test_a_fragment_nobody_attaches_to_is_spilled_from_segment_zero() -> None:
    parts = segments(10)
    lf = LiveFragment("1", UNIT, window=4, attach_s=0.2, stall_s=5)
    outcomes = [lf.offer(d, segment_sum(d)) for d in parts[:4]]
    assert outcomes == ["sent"] * 4
    started = time.monotonic()
    assert lf.offer(parts[4], segment_sum(parts[4])) == "spill"
    assert time.monotonic() - started < 2
    assert lf.spill() == parts[:4], "everything produced so far is still there for the staging file"
    with pytest.raises(StreamError):
        lf.attach()


def test_a_holder_that_stops_reading_is_dropped_and_the_encoder_goes_on() -> None:
    parts = segments(10)
    lf = LiveFragment("1", UNIT, window=2, attach_s=5, stall_s=0.3)
    frames = lf.attach()
    next_frame = next  # the holder reads one frame, then goes silent
    outcomes = []
    for data in parts:
        outcomes.append(lf.offer(data, segment_sum(data)))
        if len(outcomes) == 1:
            threading.Thread(target=lambda: next_frame(frames), daemon=True).start()
    assert "dropped" in outcomes
    assert outcomes[-1] == "dropped"
    assert not lf.queue, "a dropped holder's segments are freed"


def test_a_holder_that_goes_away_stops_its_fragment_at_once() -> None:
    parts = segments(6)
    lf = LiveFragment("1", UNIT, window=2, attach_s=5, stall_s=60)
    frames = lf.attach()
    lf.offer(parts[0], segment_sum(parts[0]))
    next(frames)
    frames.close()  # the connection is gone: the server closes the generator
    assert lf.offer(parts[1], segment_sum(parts[1])) == "dropped"


def test_a_failed_encode_ends_the_stream_without_a_record() -> None:
    parts = segments(5)
    lf = LiveFragment("1", UNIT, window=8, attach_s=5, stall_s=5)
    reader = FrameReader(lf.attach(), "test")
    for data in parts[:3]:
        lf.offer(data, segment_sum(data))
    lf.fail()
    with pytest.raises(StreamError):
        list(reader)
    assert reader.record is None


def test_a_corrupted_or_cut_stream_is_refused() -> None:
    parts = segments(3)
    lf = LiveFragment("1", UNIT, window=8, attach_s=5, stall_s=5)
    frames = lf.attach()
    for data in parts:
        lf.offer(data, segment_sum(data))
    lf.finish(record_of(parts))
    wire = b"".join(frames)
    flipped = bytearray(wire)
    flipped[100] ^= 1  # a byte of the first segment
    with pytest.raises(ChecksumError):
        list(FrameReader([bytes(flipped)], "test"))
    with pytest.raises(StreamError):
        list(FrameReader([wire[: len(wire) - 10]], "test"))
    # Any chunking of the same bytes gives the same segments.
    chunks = [wire[i : i + 777] for i in range(0, len(wire), 777)]
    reader = FrameReader(chunks, "test")
    assert [d for d, _s in reader] == parts
    assert reader.record == record_of(parts)
