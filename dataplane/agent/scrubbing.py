"""The scrub: every ready piece re-read and checked against its record; a bad one quarantined.

Every read checks the segments it serves (:mod:`dataplane.agent.serving`), so the scrub is the
net for bytes nobody reads: it runs at the chart's interval (hours), not to catch reads.

A piece that fails (bit rot, a truncated file, a record without data) is moved out of its final
name into ``<root>/.kbl-quarantine/`` (so a pod never reads it again), reported ``corrupt`` in
the holdings until a good copy replaces it, counted, and announced by a Warning Event on the
DataSet. The next reconcile hydrates the slot again from a good source.
"""

from __future__ import annotations

import logging
import time

from dataplane.agent.hydrating import Hydrator

log = logging.getLogger(__name__)


def scrub_once(hydrator: Hydrator) -> tuple[int, int]:
    """Verify every ready piece once; returns ``(verified, corrupt)``."""
    verified = corrupt = 0
    store = hydrator.store
    with hydrator.lock:
        work = [(key, slot, hydrator.view.datasets.get(key)) for key, st in hydrator.local.items() for slot in list(st.ready)]
    for key, (shard, piece_key), dataset in work:
        if dataset is None:
            continue
        spec = dataset.spec
        with hydrator.lock:
            state = hydrator.local.get(key)
            if state is None or (shard, piece_key) not in state.ready or (key, (shard, piece_key)) in hydrator.inflight:
                continue
        ok = store.verify(spec.namespace, spec.name, spec.shard_name(shard), shard, piece_key)
        verified += 1
        hydrator.metrics.verified.inc()
        if ok:
            continue
        corrupt += 1
        hydrator.quarantine(dataset, (shard, piece_key), "found by the scrub")
    return verified, corrupt


class Scrubber:
    """Calls :func:`scrub_once` every ``interval_s`` (0: never) until stopped."""

    def __init__(self, hydrator: Hydrator, interval_s: float) -> None:
        self.hydrator = hydrator
        self.interval_s = interval_s
        self.passes = 0
        self.last_pass_at = 0.0

    def run(self, stop: object) -> None:
        import threading

        assert isinstance(stop, threading.Event)
        if self.interval_s <= 0:
            return
        while not stop.wait(self.interval_s):
            scrub_once(self.hydrator)
            self.passes += 1
            self.last_pass_at = time.time()
