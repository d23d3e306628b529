"""Leader election on a Lease: never two leaders, takeover only after expiry, clean handovers."""

from __future__ import annotations

import dataclasses
import threading
from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field
from typing import Any

import pytest

from controller import Controller, ControllerSettings
from controller.providers.fake import FakeProvider
from kube.api import KBLS, LEASES, NODES, PODS, ApiError, ConflictError, Resource
from kube.leading import (
    LeaderElectionError,
    LeaderElectionSettings,
    LeaderElector,
    LeaseRecord,
    NotLeaderError,
)
from kube.memory import MemoryApi
from tests.placement.scenarios import T0, base_nodes, kbl_object, pod_object

SETTINGS = LeaderElectionSettings(lease_name="kbl-controller", namespace="kbl-system")  # 15 / 10 / 2 s


class Clock:
    """A shared monotonic clock under the test's control (epoch seconds, for the wall too)."""

    def __init__(self) -> None:
        self.now = T0

    def __call__(self) -> float:
        return self.now


@dataclass
class FlakyApi:
    """A MemoryApi seen through one candidate's network: ``down`` makes every call fail, and
    ``hold`` makes a ``get`` wait at a barrier (two candidates read the same version)."""

    api: MemoryApi
    down: bool = False
    hold: threading.Barrier | None = None
    calls: list[str] = field(default_factory=list)

    def _gate(self, what: str) -> None:
        self.calls.append(what)
        if self.down:
            raise ApiError(0, "cannot reach the API server")

    def get(self, resource: Resource, name: str, *, namespace: str | None = None) -> dict[str, Any] | None:
        self._gate("get")
        found = self.api.get(resource, name, namespace=namespace)
        if self.hold is not None:
            self.hold.wait(5)
        return found

    def create(self, resource: Resource, obj: Mapping[str, Any], *, namespace: str | None = None) -> dict[str, Any]:
        self._gate("create")
        return self.api.create(resource, obj, namespace=namespace)

    def replace(self, resource: Resource, name: str, obj: Mapping[str, Any], *, namespace: str | None = None) -> dict[str, Any]:
        self._gate("replace")
        return self.api.replace(resource, name, obj, namespace=namespace)

    def __getattr__(self, name: str) -> Any:  # list, watch, patch, ... go straight through
        return getattr(self.api, name)


def candidate(
    api: Any, name: str, clock: Clock, *, wall_offset_s: float = 0.0, settings: LeaderElectionSettings = SETTINGS
) -> LeaderElector:
    return LeaderElector(
        api, dataclasses.replace(settings, identity=name),
        clock=clock, wall=lambda: clock() + wall_offset_s, jitter=lambda: 0.5,
    )



def lease(api: MemoryApi) -> dict[str, Any]:
    obj = api.get(LEASES, "kbl-controller", namespace="kbl-system")
    assert obj is not None
    return obj


def test_the_first_candidate_creates_the_lease_with_client_go_fields_and_the_second_waits() -> None:
    api, clock = MemoryApi(), Clock()
    a, b = candidate(api, "a", clock), candidate(api, "b", clock)
    assert a.try_acquire_or_renew() is True
    assert b.try_acquire_or_renew() is False
    spec = lease(api)["spec"]
    assert spec["holderIdentity"] == "a"
    assert spec["leaseDurationSeconds"] == 15
    assert spec["leaseTransitions"] == 0
    assert spec["acquireTime"] == spec["renewTime"]
    assert spec["renewTime"].endswith("Z")
    assert len(spec["renewTime"]) == len("2026-11-21T21:00:00.000000Z")
    assert lease(api)["apiVersion"] == "coordination.k8s.io/v1"
    assert lease(api)["kind"] == "Lease"
    assert (a.is_leader(), b.is_leader(), b.holder) == (True, False, "a")


def test_a_renewal_keeps_acquire_time_and_transitions_and_moves_renew_time() -> None:
    api, clock = MemoryApi(), Clock()
    a = candidate(api, "a", clock)
    assert a.try_acquire_or_renew()
    first = LeaseRecord.from_lease(lease(api))
    clock.now += 2
    assert a.try_acquire_or_renew()
    second = LeaseRecord.from_lease(lease(api))
    assert (second.acquire_time, second.transitions) == (first.acquire_time, 0)
    assert second.renew_time > first.renew_time


def simulate(
    api: MemoryApi,
    names: list[str],
    seconds: float,
    *,
    events: Mapping[float, Any] | None = None,
    step_s: float = 0.25,
    offsets: Mapping[str, float] | None = None,
) -> Iterator[tuple[float, dict[str, LeaderElector], dict[str, FlakyApi]]]:
    """Every candidate attempts every retry period (starting at staggered offsets); yields after each tick."""
    clock = Clock()
    nets = {n: FlakyApi(api) for n in names}
    electors = {n: candidate(nets[n], n, clock, wall_offset_s=(offsets or {}).get(n, 0.0)) for n in names}
    next_try = {n: T0 + 0.1 * i for i, n in enumerate(names)}
    crashed: set[str] = set()
    start = clock.now
    while clock.now - start < seconds:
        for at, event in (events or {}).items():
            if start + at <= clock.now < start + at + step_s:
                event(electors, nets, crashed)
        for name in names:
            if name not in crashed and clock.now >= next_try[name]:
                electors[name].try_acquire_or_renew()
                next_try[name] = clock.now + SETTINGS.retry_period_s
        yield clock.now - start, electors, nets
        clock.now += step_s


def leaders(electors: dict[str, LeaderElector]) -> list[str]:
    return [n for n, e in electors.items() if e.is_leader()]


def test_exactly_one_leads_at_every_instant_across_crashes_partitions_and_handovers() -> None:
    """Three candidates for 200 simulated seconds: the leader crashes (stops renewing, keeps
    its state), then the next one is cut off from the API server, then the next releases
    cleanly. At every quarter second at most one of them believes it leads, and a leader
    exists again within a lease duration plus a retry period of each loss."""
    api = MemoryApi()
    crash_at: dict[str, float] = {}

    def crash(electors: dict[str, LeaderElector], nets: dict[str, FlakyApi], crashed: set[str]) -> None:
        (leader,) = leaders(electors)
        crashed.add(leader)
        crash_at["crash"] = electors[leader].clock()

    def partition(electors: dict[str, LeaderElector], nets: dict[str, FlakyApi], crashed: set[str]) -> None:
        (leader,) = leaders(electors)
        nets[leader].down = True
        crash_at["partition"] = electors[leader].clock()

    def release(electors: dict[str, LeaderElector], nets: dict[str, FlakyApi], crashed: set[str]) -> None:
        (leader,) = leaders(electors)
        assert electors[leader].release()
        crashed.add(leader)  # a clean shutdown: it stops campaigning
        crash_at["release"] = electors[leader].clock()

    history: list[tuple[float, list[str]]] = []
    for t, electors, _ in simulate(api, ["a", "b", "c", "d"], 200, events={30: crash, 90: partition, 150: release}):
        now = leaders(electors)
        assert len(now) <= 1, f"two leaders at t={t}: {now}"
        history.append((t, now))
    gaps = [t for t, now in history if not now and t > 1]
    assert gaps, "a crash must leave a gap: the follower waits out the lease"
    distinct = [now[0] for i, (_, now) in enumerate(history) if now and (i == 0 or history[i - 1][1] != now)]
    assert len(distinct) == 4, distinct
    # Each loss is healed within lease duration + a retry period (+ one tick), never before the
    # old leader's renew deadline has passed.
    for t0 in (30.0, 90.0):
        back = min(t for t, now in history if t > t0 and now and now[0] != distinct[[30.0, 90.0].index(t0)])
        assert SETTINGS.renew_deadline_s <= back - t0 <= SETTINGS.lease_duration_s + SETTINGS.retry_period_s + 0.5
    after_release = min(t for t, now in history if t > 150 and now and now[0] == distinct[3])
    assert after_release - 150 <= SETTINGS.retry_period_s + 0.5  # no lease duration to wait out
    assert lease(api)["spec"]["leaseTransitions"] == 3


def test_a_follower_whose_wall_clock_runs_an_hour_ahead_does_not_take_over_a_live_lease() -> None:
    """Expiry is judged by when the follower saw the record change, never by renewTime."""
    api = MemoryApi()
    for t, electors, _ in simulate(api, ["a", "b"], 60, offsets={"b": 3600.0, "a": -3600.0}):
        if t > 1:
            assert leaders(electors) == ["a"], t


def test_a_leader_cut_off_from_the_api_stops_leading_at_its_renew_deadline() -> None:
    api, clock = MemoryApi(), Clock()
    net = FlakyApi(api)
    a = candidate(net, "a", clock)
    assert a.try_acquire_or_renew()
    net.down = True
    clock.now += SETTINGS.renew_deadline_s - 0.01
    assert a.try_acquire_or_renew() is False
    assert a.is_leader()
    clock.now += 0.02
    assert not a.is_leader()
    with pytest.raises(NotLeaderError):
        a.check("before-intent")


def test_two_candidates_reading_the_same_expired_lease_cannot_both_take_it() -> None:
    api, clock = MemoryApi(), Clock()
    old = candidate(api, "old", clock)
    assert old.try_acquire_or_renew()
    nets = [FlakyApi(api), FlakyApi(api)]
    racers = [candidate(nets[0], "x", clock), candidate(nets[1], "y", clock)]
    for racer in racers:  # both saw the old record long ago
        assert racer.try_acquire_or_renew() is False
    barrier = threading.Barrier(2)
    for net in nets:
        net.hold = barrier
    clock.now += SETTINGS.lease_duration_s + 1
    results: dict[str, bool] = {}
    threads = [threading.Thread(target=lambda r=r: results.__setitem__(r.identity, r.try_acquire_or_renew())) for r in racers]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(10)
    assert sorted(results.values()) == [False, True]
    winner = next(name for name, won in results.items() if won)
    assert [r.identity for r in racers if r.is_leader()] == [winner]
    assert lease(api)["spec"]["holderIdentity"] == winner
    assert lease(api)["spec"]["leaseTransitions"] == 1


def test_two_candidates_creating_the_lease_at_once_cannot_both_win() -> None:
    api, clock = MemoryApi(), Clock()
    barrier = threading.Barrier(2)
    racers = [candidate(FlakyApi(api, hold=barrier), n, clock) for n in ("x", "y")]
    results: list[bool] = []
    threads = [threading.Thread(target=lambda r=r: results.append(r.try_acquire_or_renew())) for r in racers]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(10)
    assert sorted(results) == [False, True]
    assert sum(r.is_leader() for r in racers) == 1


def test_inconsistent_durations_are_refused_with_the_reason() -> None:
    with pytest.raises(LeaderElectionError, match="must exceed the renew deadline"):
        LeaderElectionSettings(lease_duration_s=10, renew_deadline_s=10)
    with pytest.raises(LeaderElectionError, match="retry period"):
        LeaderElectionSettings(renew_deadline_s=2, retry_period_s=2)
    with pytest.raises(LeaderElectionError, match="lease name"):
        LeaderElectionSettings(lease_name="")


# --------------------------------------------------------------------------- the loop, threaded
FAST = LeaderElectionSettings(
    lease_name="kbl-controller", namespace="kbl-system", lease_duration_s=1.5, renew_deadline_s=1.0, retry_period_s=0.1
)


def wait_until(predicate: Any, timeout_s: float = 10.0) -> None:
    done = threading.Event()
    for _ in range(int(timeout_s / 0.01)):
        if predicate():
            return
        done.wait(0.01)
    raise AssertionError("condition not reached")


def test_run_leads_renews_and_hands_over_on_a_clean_stop() -> None:
    api = MemoryApi()
    a = LeaderElector(api, dataclasses.replace(FAST, identity="a"))
    b = LeaderElector(api, dataclasses.replace(FAST, identity="b"))
    worked: list[str] = []

    def work(name: str) -> Any:
        def lead(done: threading.Event) -> None:
            worked.append(name)
            done.wait()

        return lead

    stop_a, stop_b = threading.Event(), threading.Event()
    ended: dict[str, bool] = {}
    ta = threading.Thread(target=lambda: ended.__setitem__("a", a.run(stop_a, work("a"))))
    ta.start()
    wait_until(lambda: worked == ["a"])
    tb = threading.Thread(target=lambda: ended.__setitem__("b", b.run(stop_b, work("b"))))
    tb.start()
    threading.Event().wait(FAST.lease_duration_s * 1.5)  # a keeps renewing: b never gets in
    assert worked == ["a"]
    assert a.is_leader()
    assert not b.is_leader()
    stop_a.set()
    ta.join(10)
    assert ended["a"] is True
    wait_until(lambda: worked == ["a", "b"], timeout_s=FAST.lease_duration_s)  # released: no lease to wait out
    stop_b.set()
    tb.join(10)
    assert lease(api)["spec"].get("holderIdentity", "") == ""
    assert lease(api)["spec"]["leaseTransitions"] == 1


def test_run_ends_the_work_and_reports_a_lost_lease_when_renewals_fail() -> None:
    api = MemoryApi()
    net = FlakyApi(api)
    a = LeaderElector(net, dataclasses.replace(FAST, identity="a"))
    done_seen = threading.Event()

    def lead(done: threading.Event) -> None:
        net.down = True  # the API server becomes unreachable from here
        done.wait()
        done_seen.set()

    ended: list[bool] = []
    runner = threading.Thread(target=lambda: ended.append(a.run(threading.Event(), lead)), daemon=True)
    runner.start()
    runner.join(10)
    assert ended == [False]
    assert done_seen.is_set()
    assert not a.is_leader()


def test_a_controller_that_no_longer_leads_makes_no_write() -> None:
    api, clock = MemoryApi(), Clock()
    for node in base_nodes():
        api.put(NODES, node)
    api.put(KBLS, kbl_object("genomics"))
    for i in range(3):
        api.put(PODS, pod_object(f"p{i}", kbl="genomics", cpu="3"))
    net = FlakyApi(api)
    elector = candidate(net, "a", clock)
    assert elector.try_acquire_or_renew()
    cloud = FakeProvider(clock)
    controller = Controller(api, cloud, ControllerSettings(cluster_name="le"), clock=clock, guard=elector.check)
    net.down = True
    clock.now += SETTINGS.renew_deadline_s
    with pytest.raises(NotLeaderError):
        controller.reconcile_once()
    assert cloud.calls_of("create_group") == []
    assert not (api.get(KBLS, "genomics") or {}).get("status")
    net.down = False
    assert elector.try_acquire_or_renew()  # nobody took over: it may act again
    controller.reconcile_once()
    assert len(cloud.calls_of("create_group")) == 1


def test_memory_api_create_and_replace_enforce_names_and_resource_versions() -> None:
    api = MemoryApi()
    body = {"metadata": {"name": "l"}, "spec": {"holderIdentity": "a"}}
    made = api.create(LEASES, body, namespace="kbl-system")
    with pytest.raises(ConflictError):
        api.create(LEASES, body, namespace="kbl-system")
    stale = made["metadata"]["resourceVersion"]
    newer = {"metadata": {"name": "l", "resourceVersion": stale}, "spec": {"holderIdentity": "b"}}
    ok = api.replace(LEASES, "l", newer, namespace="kbl-system")
    assert ok["spec"] == {"holderIdentity": "b"}
    assert ok["metadata"]["resourceVersion"] != stale
    with pytest.raises(ConflictError) as conflict:
        api.replace(LEASES, "l", {"metadata": {"name": "l", "resourceVersion": stale}, "spec": {}}, namespace="kbl-system")
    assert conflict.value.status == 409
    with pytest.raises(ApiError) as missing:
        api.replace(LEASES, "nope", {"metadata": {"name": "nope"}}, namespace="kbl-system")
    assert missing.value.status == 404
