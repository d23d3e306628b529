import pytest
from hypothesis import given
from hypothesis import strategies as st

from topology.errors import ShardRangeError
from topology.shards import format_shards, parse_shards


def test_parses_indexes_and_inclusive_ranges() -> None:
    assert parse_shards("0-15,32") == (*range(16), 32)
    assert parse_shards(" 3 , 1-2 ,3") == (1, 2, 3)


@pytest.mark.parametrize("text", ["", ",", "a", "1-", "-1", "3-1", "1-2-3", "1;2", "0x10"])
def test_rejects_malformed_shard_sets(text: str) -> None:
    with pytest.raises(ShardRangeError):
        parse_shards(text)


def test_rejects_shards_beyond_the_dataset_naming_the_bound() -> None:
    with pytest.raises(ShardRangeError, match="has 10 shards"):
        parse_shards("5-10", 10)


def test_huge_ranges_are_bounded_by_the_shard_count() -> None:
    with pytest.raises(ShardRangeError):
        parse_shards("0-99999999999", 100)


@given(st.sets(st.integers(0, 500), min_size=1))
def test_format_is_the_inverse_of_parse(indexes: set[int]) -> None:
    assert parse_shards(format_shards(sorted(indexes))) == tuple(sorted(indexes))
