"""The reconciler's ready cache never outlives a report change that raced a pass."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, cast

import numpy as np
import numpy.typing as npt

from dataplane.reconciler.planning import ReadyCache


@dataclass
class Reports:
    """What :meth:`ReadyCache.had` reads of a ``Holders``: the DataSet's key and uid, and the matrix."""

    matrix: npt.NDArray[np.bool_]
    key: str = "default/a"
    uid: str = "uid-a"

    @property
    def spec(self) -> Any:
        return self

    def had_matrix(self, nodes: Any, index: Any) -> npt.NDArray[np.bool_]:
        return self.matrix.copy()

    def had(self, node: str, s: int, p: int) -> bool:
        return bool(self.matrix[s, p])


NODES = ("n0", "n1", "n2")
INDEX = np.array([[0, 1], [1, 2]], dtype=np.int32)


def test_a_report_change_that_lands_while_a_pass_reads_older_reports_is_not_lost() -> None:
    cache = ReadyCache()
    before = Reports(np.array([[True, False], [True, True]]))
    after = Reports(np.array([[True, True], [True, True]]))  # the agent reported the missing piece

    cache.view_epoch = cache.epoch()  # a pass takes its view of the reports...
    cache.touch(["default/a"])  # ...then the holdings event arrives, while the pass still runs
    seen = cache.had(cast(Any, before), NODES, INDEX)  # the pass reads the view it took
    assert seen.tolist() == before.matrix.tolist()

    cache.view_epoch = cache.epoch()  # the next pass, on the new reports
    again = cache.had(cast(Any, after), NODES, INDEX)
    assert again.tolist() == after.matrix.tolist(), "the stale matrix of the raced pass was kept"
    assert cache.computed == 2


def test_unchanged_reports_are_read_once_across_passes() -> None:
    cache = ReadyCache()
    reports = Reports(np.array([[True, False], [True, True]]))
    for _ in range(3):
        cache.view_epoch = cache.epoch()
        assert cache.had(cast(Any, reports), NODES, INDEX).tolist() == reports.matrix.tolist()
    assert cache.computed == 1
