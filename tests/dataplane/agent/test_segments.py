"""Segments: cutting, tables and geometry (pure), against the plain definitions."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from dataplane.agent.segments import Geometry, SegmentHasher, SegmentMismatch, pack, resegment, segment_sum, unpack


@given(st.lists(st.binary(max_size=300), max_size=20), st.integers(1, 97))
def test_resegment_cuts_any_chunks_into_exact_segments_that_join_back(chunks: list[bytes], unit: int) -> None:
    data = b"".join(chunks)
    segments = list(resegment(chunks, unit))
    assert b"".join(segments) == data
    assert all(len(s) == unit for s in segments[:-1])
    assert not segments or 0 < len(segments[-1]) <= unit


@given(st.binary(max_size=2000), st.integers(1, 97), st.integers(1, 50))
def test_a_streamed_table_is_the_sum_of_every_segment_whatever_the_chunking(data: bytes, unit: int, step: int) -> None:
    hasher = SegmentHasher(unit)
    for i in range(0, len(data), step):
        hasher.update(data[i : i + step])
    table = hasher.finish()
    assert table == [segment_sum(data[i : i + unit]) for i in range(0, len(data), unit)]
    assert list(unpack(pack(table))) == table
    geometry = Geometry(len(data), unit)
    assert geometry.count == len(table)
    assert b"".join(data[slice(*geometry.bounds(j))] for j in range(geometry.count)) == data


@given(st.binary(min_size=1, max_size=2000), st.integers(1, 97), st.data())
def test_a_checked_stream_stops_at_its_first_bad_segment(data: bytes, unit: int, draw: st.DataObject) -> None:
    table = SegmentHasher(unit)
    table.update(data)
    expected = unpack(pack(table.finish()))
    at = draw.draw(st.integers(0, len(data) - 1))
    bad = bytearray(data)
    bad[at] ^= 0x01
    checker = SegmentHasher(unit, expected)

    def check() -> None:
        checker.update(bytes(bad))
        checker.finish()

    with pytest.raises(SegmentMismatch) as caught:
        check()
    assert caught.value.index == at // unit


@given(st.integers(0, 5000), st.integers(1, 300), st.integers(0, 5000), st.integers(0, 5000))
def test_a_span_is_exactly_the_segments_a_byte_range_overlaps(size: int, unit: int, a: int, b: int) -> None:
    geometry = Geometry(size, unit)
    start, end = min(a, b, size), min(max(a, b), size)
    touched = {j for j in range(geometry.count) if start < end and geometry.bounds(j)[0] < end and geometry.bounds(j)[1] > start}
    assert set(geometry.span(start, end)) == touched
