"""A shared fixture for tests whose few thousand shards must make a few large slices."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from topology import slices as slices_module


@pytest.fixture(autouse=True, scope="module")
def largest_slices() -> Iterator[None]:
    """Slices of 2,048 pieces (what a DataSet of millions of pieces gets): a few thousand shards
    make three slices, the case the tests that import this spell out."""
    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(slices_module, "MIN_SLICE_PIECES", slices_module.SLICE_PIECES)
        yield
