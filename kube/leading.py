"""Leader election on a ``coordination.k8s.io/v1`` Lease, so only one ``kbl controller`` acts.

The semantics are client-go's (``tools/leaderelection`` with a ``LeaseLock``). The Lease's
``spec`` is the election record: ``holderIdentity``, ``leaseDurationSeconds``, ``acquireTime``,
``renewTime`` (RFC 3339 with microseconds) and ``leaseTransitions``. One attempt
(:meth:`LeaderElector.try_acquire_or_renew`):

1. ``get`` the Lease; if there is none, ``create`` it with ourselves as holder (two candidates
   creating at once: the API server lets one in, the other gets ``409``).
2. If the record (or its ``resourceVersion``) differs from the one seen last, remember it and
   the time we saw it *on our own monotonic clock* (``observed_at``). The holder's ``renewTime`` is never compared with our
   clock: clocks of different machines disagree, the time we first saw a record does not.
3. Another holder whose record we saw change less than its ``leaseDurationSeconds`` ago holds
   the lease: give up this attempt. An empty ``holderIdentity`` (a released lease) is free.
4. ``replace`` the Lease with our record, carrying the ``resourceVersion`` we read: when two
   candidates read the same expired record, only the first write succeeds and the other gets a
   ``409`` :class:`~kube.api.ConflictError` (optimistic concurrency). ``acquireTime`` and
   ``leaseTransitions`` are kept on a renewal; taking over sets ``acquireTime`` and adds one to
   ``leaseTransitions``.

The leader renews every ``retry_period_s``. It counts as leader (:meth:`LeaderElector.is_leader`)
only while its last successful attempt *started* less than ``renew_deadline_s`` ago on its own
clock; since ``renew_deadline_s < lease_duration_s`` and a follower starts counting no earlier
than that attempt's write, the old leader has stopped acting before anyone can take over, even
if its renewing thread hangs in a call. :meth:`LeaderElector.run` campaigns, runs the leader's
work in a thread with an event that is set when leadership ends, and on a clean stop releases
the lease (``holderIdentity`` emptied, ``leaseDurationSeconds: 1``) so a standby takes over at
once instead of after a full lease duration.
"""

from __future__ import annotations

import logging
import math
import os
import random
import socket
import threading
import time
import uuid
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any

from kube.api import LEASES, ApiError, KubeApi
from topology.errors import KblError
from topology.times import format_micro_time

log = logging.getLogger(__name__)

#: Where a pod finds its own namespace (the service-account mount).
NAMESPACE_FILE = "/var/run/secrets/kubernetes.io/serviceaccount/namespace"
#: client-go's jitter factor: waits between campaign attempts are ``retry x (1 + U(0, 1.2))``.
JITTER_FACTOR = 1.2


class LeaderElectionError(KblError):
    """Leader election settings that cannot work (the message says which and why)."""


class NotLeaderError(KblError):
    """This controller no longer leads: it must not act (raised before any write)."""


@dataclass(frozen=True, slots=True)
class LeaderElectionSettings:
    """Knobs of the election; durations in seconds (client-go's defaults: 15 / 10 / 2).

    Raises
    ------
    LeaderElectionError
        Unless ``lease_duration_s > renew_deadline_s > retry_period_s x 1.2 > 0`` and the lease
        name is set (the order client-go requires: a leader must get several renewal tries
        before its deadline, and its deadline must end before anyone may take over).
    """

    lease_name: str = "kbl-controller"
    namespace: str = "kbl-system"
    identity: str = ""
    lease_duration_s: float = 15.0
    renew_deadline_s: float = 10.0
    retry_period_s: float = 2.0

    def __post_init__(self) -> None:
        if not self.lease_name or not self.namespace:
            raise LeaderElectionError("leader election needs a lease name and a namespace")
        if self.retry_period_s <= 0:
            raise LeaderElectionError(f"retry period {self.retry_period_s} s must be positive")
        if self.renew_deadline_s <= JITTER_FACTOR * self.retry_period_s:
            raise LeaderElectionError(
                f"renew deadline {self.renew_deadline_s} s must exceed {JITTER_FACTOR} x the retry period ({self.retry_period_s} s)"
            )
        if self.lease_duration_s <= self.renew_deadline_s:
            raise LeaderElectionError(
                f"lease duration {self.lease_duration_s} s must exceed the renew deadline {self.renew_deadline_s} s "
                "(otherwise a follower could take over while the leader still acts)"
            )


def default_identity() -> str:
    """``<pod name>_<8 hex>`` (``POD_NAME``, else the hostname, which is the pod name in a
    cluster): unique across restarts of the same pod."""
    return f"{os.environ.get('POD_NAME') or socket.gethostname()}_{uuid.uuid4().hex[:8]}"


def own_namespace(default: str = "kbl-system") -> str:
    """The pod's namespace from its service-account mount, else ``default``."""
    try:
        with open(NAMESPACE_FILE, encoding="utf-8") as handle:
            return handle.read().strip() or default
    except OSError:
        return default


@dataclass(frozen=True, slots=True)
class LeaseRecord:
    """The election record in a Lease's ``spec`` (times as the API server stores them)."""

    holder: str = ""
    lease_duration_s: int = 0
    acquire_time: str = ""
    renew_time: str = ""
    transitions: int = 0

    @classmethod
    def from_lease(cls, lease: Mapping[str, Any]) -> LeaseRecord:
        """The record of a raw Lease; missing or mistyped fields read as empty or zero."""
        spec = lease.get("spec") or {}
        if not isinstance(spec, Mapping):
            spec = {}

        def number(key: str) -> int:
            value = spec.get(key)
            return value if isinstance(value, int) and not isinstance(value, bool) and value >= 0 else 0

        return cls(
            str(spec.get("holderIdentity") or ""),
            number("leaseDurationSeconds"),
            str(spec.get("acquireTime") or ""),
            str(spec.get("renewTime") or ""),
            number("leaseTransitions"),
        )

    def to_spec(self) -> dict[str, Any]:
        spec: dict[str, Any] = {"leaseDurationSeconds": self.lease_duration_s, "leaseTransitions": self.transitions}
        if self.holder:
            spec["holderIdentity"] = self.holder
        if self.acquire_time:
            spec["acquireTime"] = self.acquire_time
        if self.renew_time:
            spec["renewTime"] = self.renew_time
        return spec


class LeaderElector:
    """One candidate of the election (see the module docstring).

    Parameters
    ----------
    kube:
        The Kubernetes API (``get``, ``create`` and ``replace`` on the Lease).
    settings:
        Lease name, namespace, identity and durations.
    clock:
        Monotonic seconds: when records were observed and renewals succeeded.
    wall:
        Epoch seconds, only written into ``acquireTime`` and ``renewTime`` for humans.
    jitter:
        A uniform draw in ``[0, 1)`` spreading the candidates' attempts (seedable).
    """

    def __init__(
        self,
        kube: KubeApi,
        settings: LeaderElectionSettings | None = None,
        *,
        clock: Callable[[], float] = time.monotonic,
        wall: Callable[[], float] = time.time,
        jitter: Callable[[], float] = random.random,
    ) -> None:
        self.kube = kube
        self.settings = settings or LeaderElectionSettings()
        self.identity = self.settings.identity or default_identity()
        self.clock = clock
        self.wall = wall
        self.jitter = jitter
        self.observed = LeaseRecord()
        self.observed_version = ""
        self.observed_at = -math.inf
        self.renewed_at: float | None = None
        self._lock = threading.Lock()

    # --------------------------------------------------------------------- state
    @property
    def holder(self) -> str:
        """The holder of the lease as last observed ('' when free or never read)."""
        return self.observed.holder

    def is_leader(self) -> bool:
        """True while we hold the lease and our last successful attempt started less than
        ``renew_deadline_s`` ago on our clock."""
        with self._lock:
            return (
                self.observed.holder == self.identity
                and self.renewed_at is not None
                and self.clock() - self.renewed_at < self.settings.renew_deadline_s
            )

    def check(self, step: str = "") -> None:
        """Raise :class:`NotLeaderError` unless :meth:`is_leader` (a gate before every write)."""
        if not self.is_leader():
            where = f" at {step}" if step else ""
            raise NotLeaderError(f"{self.identity} does not lead lease {self.settings.namespace}/{self.settings.lease_name}{where}")

    # ------------------------------------------------------------------ attempts
    def _observe(self, record: LeaseRecord, version: str, at: float) -> None:
        with self._lock:
            if (record, version) != (self.observed, self.observed_version):
                self.observed = record
                self.observed_version = version
                self.observed_at = at

    def try_acquire_or_renew(self) -> bool:
        """One attempt to take or keep the lease; True when we hold it now.

        API errors (including a ``409`` lost race) count as a failed attempt, never raise.
        """
        started = self.clock()
        name, namespace = self.settings.lease_name, self.settings.namespace
        now = format_micro_time(self.wall())
        mine = LeaseRecord(self.identity, math.ceil(self.settings.lease_duration_s), now, now, 0)
        try:
            lease = self.kube.get(LEASES, name, namespace=namespace)
            if lease is None:
                created = self.kube.create(LEASES, self._lease(mine), namespace=namespace)
                self._won(mine, _version(created), started)
                log.info("%s acquired new lease %s/%s", self.identity, namespace, name)
                return True
            old = LeaseRecord.from_lease(lease)
            self._observe(old, _version(lease), started)
            leading = old.holder == self.identity
            duration = old.lease_duration_s or math.ceil(self.settings.lease_duration_s)
            if old.holder and not leading and self.observed_at + duration > started:
                return False  # held by someone else, and not yet expired by our observation
            if leading:
                mine = LeaseRecord(self.identity, mine.lease_duration_s, old.acquire_time or now, now, old.transitions)
            else:
                mine = LeaseRecord(self.identity, mine.lease_duration_s, now, now, old.transitions + 1)
            body = self._lease(mine)
            body["metadata"]["resourceVersion"] = _version(lease)
            replaced = self.kube.replace(LEASES, name, body, namespace=namespace)
        except ApiError as exc:
            log.info("%s: lease %s/%s not acquired or renewed: %s", self.identity, namespace, name, exc)
            return False
        if not leading:
            log.info("%s took over lease %s/%s from %r", self.identity, namespace, name, old.holder)
        self._won(mine, _version(replaced), started)
        return True

    def _won(self, record: LeaseRecord, version: str, started: float) -> None:
        with self._lock:
            self.observed = record
            self.observed_version = version
            self.observed_at = started
            self.renewed_at = started

    def _lease(self, record: LeaseRecord) -> dict[str, Any]:
        return {
            "apiVersion": LEASES.api_version,
            "kind": LEASES.kind,
            "metadata": {"name": self.settings.lease_name, "namespace": self.settings.namespace},
            "spec": record.to_spec(),
        }

    def release(self) -> bool:
        """Give the lease up (``holderIdentity`` emptied) if we hold it; True when done or not held."""
        if self.observed.holder != self.identity:
            return True
        name, namespace = self.settings.lease_name, self.settings.namespace
        now = format_micro_time(self.wall())
        try:
            lease = self.kube.get(LEASES, name, namespace=namespace)
            if lease is None or LeaseRecord.from_lease(lease).holder != self.identity:
                return True
            record = LeaseRecord("", 1, now, now, self.observed.transitions)
            body = self._lease(record)
            body["metadata"]["resourceVersion"] = _version(lease)
            released = self.kube.replace(LEASES, name, body, namespace=namespace)
        except ApiError as exc:
            log.warning("%s could not release lease %s/%s: %s", self.identity, namespace, name, exc)
            return False
        with self._lock:
            self.observed = record
            self.observed_version = _version(released)
            self.observed_at = self.clock()
            self.renewed_at = None
        return True

    # ---------------------------------------------------------------------- loop
    def run(self, stop: threading.Event, lead: Callable[[threading.Event], None]) -> bool:
        """Campaign until we lead, then run ``lead(done)`` in a thread while renewing.

        ``done`` is set when leadership ends (stop asked, renewal past the deadline). Returns
        True when it ended cleanly (``stop`` set, or ``lead`` returned; the lease is released),
        False when leadership was lost (the caller should exit: kube components do the same).
        An exception raised by ``lead`` is re-raised here after the lease is released.
        """
        period = self.settings.retry_period_s
        while not self.try_acquire_or_renew():
            if stop.wait(period * (1.0 + JITTER_FACTOR * self.jitter())):
                return True
        done = threading.Event()
        failure: list[BaseException] = []

        def work() -> None:
            try:
                lead(done)
            except BaseException as exc:  # handed to the caller's thread
                failure.append(exc)
            finally:
                done.set()

        worker = threading.Thread(target=work, name="leading", daemon=True)
        worker.start()
        lost = False
        while not done.is_set():
            if stop.wait(period) or done.is_set():
                break
            while not self.try_acquire_or_renew():
                if not self.is_leader():
                    lost = True
                    break
                if stop.wait(period) or done.is_set():
                    break
            if lost:
                where = f"{self.settings.namespace}/{self.settings.lease_name}"
                log.error("%s lost lease %s (holder now %r)", self.identity, where, self.holder)
                break
        done.set()
        worker.join(self.settings.renew_deadline_s)
        if not lost:
            self.release()
        if failure and not isinstance(failure[0], NotLeaderError):
            raise failure[0]
        return not lost


def _version(obj: Mapping[str, Any] | None) -> str:
    return str(((obj or {}).get("metadata") or {}).get("resourceVersion") or "")


def settings_from(
    *, lease_name: str, namespace: str | None, identity: str, lease_duration_s: float, renew_deadline_s: float, retry_period_s: float
) -> LeaderElectionSettings:
    """Settings from CLI arguments; the namespace defaults to the pod's own (or ``kbl-system``).

    Raises
    ------
    LeaderElectionError
        When the durations are inconsistent (see :class:`LeaderElectionSettings`).
    """
    return LeaderElectionSettings(
        lease_name=lease_name,
        namespace=namespace or os.environ.get("POD_NAMESPACE") or own_namespace(),
        identity=identity,
        lease_duration_s=lease_duration_s,
        renew_deadline_s=renew_deadline_s,
        retry_period_s=retry_period_s,
    )
