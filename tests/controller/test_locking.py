"""One lock per group, taken by writers in different processes (``kbl bake`` beside the controller).

The two writers are two :class:`GroupLocks` on one in-memory API that enforces
``metadata.resourceVersion`` preconditions on patches as the API server does; the interleaving is
forced through the lock's ``guard`` hook, which runs between a writer's read and its write.
"""

from __future__ import annotations

from controller.acting import Actor
from controller.locking import BAKE, PATCH, ROLL, GroupLocks
from controller.providers.fake import FakeProvider
from kube.api import KBLS
from kube.memory import MemoryApi
from tests.placement.scenarios import kbl_object

KBL = "default/k"
GROUP = "kbl-k-b"


def _api() -> MemoryApi:
    api = MemoryApi()
    api.put(KBLS, kbl_object("k"))
    return api


def test_a_take_that_loses_the_race_to_another_process_gets_the_winners_record_and_writes_nothing() -> None:
    api = _api()
    controller = GroupLocks(api)
    raced: list[str] = []

    def roll_takes_it_in_between(step: str) -> None:
        if not raced:  # `kbl bake` has read a free group; the controller's roll takes it before the write lands
            raced.append(step)
            assert controller.take(KBL, GROUP, ROLL, {"node": "n1", "step": "surge"}) is None

    bake = GroupLocks(api, guard=roll_takes_it_in_between)
    held = bake.take(KBL, GROUP, BAKE, {"node": "n2", "step": "drain"})

    assert raced, "the interleaving ran"
    assert held == {"by": ROLL, "node": "n1", "step": "surge"}, "the bake sees the roll's record (a roll's lock is never stale)"
    assert controller.holder(KBL, GROUP) == {"by": ROLL, "node": "n1", "step": "surge"}


def test_a_holders_progress_write_that_meets_another_change_reads_again_and_keeps_both() -> None:
    api = _api()
    GroupLocks(api).take(KBL, "kbl-k-a", PATCH, {"node": "a1", "step": "reboot"})
    other: list[int] = []

    def another_group_changes_in_between(_step: str) -> None:
        if not other:
            other.append(1)
            GroupLocks(api).write(KBL, "kbl-k-a", {"by": PATCH, "node": "a1", "step": "wait-ready"})

    GroupLocks(api, guard=another_group_changes_in_between).write(KBL, GROUP, {"by": ROLL, "node": "b1", "step": "drain"})

    locks = GroupLocks(api)
    assert locks.holder(KBL, GROUP) == {"by": ROLL, "node": "b1", "step": "drain"}
    assert locks.holder(KBL, "kbl-k-a") == {"by": PATCH, "node": "a1", "step": "wait-ready"}, "the other write is not lost"


def test_the_controllers_status_write_never_erases_a_lock_kbl_bake_took_in_between() -> None:
    api = _api()
    raced: list[str] = []

    def bake_takes_the_group_in_between(step: str) -> None:
        if not raced:  # the controller has read the KBL; `kbl bake` takes the group before the status write lands
            raced.append(step)
            assert GroupLocks(api).take(KBL, GROUP, ROLL, {"node": "n1", "step": "surge"}) is None

    actor = Actor(api, FakeProvider(lambda: 0.0), "c", clock=lambda: 0.0, hook=lambda _h: None, guard=bake_takes_the_group_in_between)
    actor.group_status(KBL, GROUP, {"phase": "Active", "desired": 2})

    assert raced, "the interleaving ran"
    assert GroupLocks(api).holder(KBL, GROUP) == {"by": ROLL, "node": "n1", "step": "surge"}, "the lock survives"
    kbl = api.get(KBLS, "k", namespace="default")
    assert kbl is not None
    entries = {e["name"]: e for e in kbl["status"]["nodeGroups"]}
    assert entries[GROUP]["phase"] == "Active"
    assert entries[GROUP]["desired"] == 2
