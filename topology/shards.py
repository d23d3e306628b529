"""Shard index sets: parsing and printing the ``kbl.io/shards`` annotation (``"0-15,32"``).

A pod reads a subset of a dataset's shards. The annotation lists indexes and inclusive ranges
separated by commas; absence means "all shards". Parsing is strict (a clear
:class:`~topology.errors.ShardRangeError`, never a silent partial read) and bounded: a range
cannot expand to more indexes than the dataset has shards.
"""

from __future__ import annotations

import re

from topology.errors import ShardRangeError

_ITEM = re.compile(r"^\s*(\d+)\s*(?:-\s*(\d+)\s*)?$")
#: Longest annotation we accept; a real one is a few dozen characters.
MAX_ANNOTATION_CHARS = 65536


def parse_shards(text: str, shard_count: int | None = None) -> tuple[int, ...]:
    """Parse a shard set such as ``"0-15,32"`` into sorted unique indexes.

    Parameters
    ----------
    text:
        The annotation value.
    shard_count:
        The dataset's shard count; when given, every index must be below it.

    Returns
    -------
    tuple[int, ...]
        Sorted, de-duplicated shard indexes.

    Raises
    ------
    ShardRangeError
        Empty text, an item that is not ``N`` or ``A-B``, ``A > B``, or an index out of range.

    Examples
    --------
    >>> parse_shards("0-3,7,2")
    (0, 1, 2, 3, 7)
    """
    if len(text) > MAX_ANNOTATION_CHARS:
        raise ShardRangeError(f"shard set is {len(text)} characters long, more than {MAX_ANNOTATION_CHARS}")
    if not text.strip():
        raise ShardRangeError("empty shard set")
    limit = shard_count if shard_count is not None else 10**7
    out: set[int] = set()
    for item in text.split(","):
        match = _ITEM.match(item)
        if match is None:
            raise ShardRangeError(f"bad shard item {item.strip()!r}: expected N or A-B")
        start = int(match[1])
        end = int(match[2]) if match[2] is not None else start
        if start > end:
            raise ShardRangeError(f"bad shard range {item.strip()!r}: start is after end")
        if end >= limit:
            if shard_count is not None:
                raise ShardRangeError(f"shard {end} out of range: the dataset has {shard_count} shards (0-{shard_count - 1})")
            raise ShardRangeError(f"shard {end} out of range")
        out.update(range(start, end + 1))
    return tuple(sorted(out))


def format_shards(indexes: tuple[int, ...] | list[int]) -> str:
    """Print indexes compactly, the inverse of :func:`parse_shards`.

    >>> format_shards([0, 1, 2, 3, 7])
    '0-3,7'
    """
    parts: list[str] = []
    items = sorted(set(indexes))
    i = 0
    while i < len(items):
        j = i
        while j + 1 < len(items) and items[j + 1] == items[j] + 1:
            j += 1
        parts.append(str(items[i]) if i == j else f"{items[i]}-{items[j]}")
        i = j + 1
    return ",".join(parts)
