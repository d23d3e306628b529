"""Where the agent's erasure codec should run: in the copying thread, one segment per call, or in a process pool.

pyeclib holds the GIL while it encodes. The agent encodes one 1 MiB segment per call, so the
question is what that costs the agent's other threads (its read API, its reconcile loop) and
what a process pool would cost instead. Measured on the same bytes in one run:

- **in-thread**: encode throughput on one core, and the longest stall a 1 ms ticker thread sees
  while segments are encoded back to back (what the read API would see);
- **whole-shard call**: the same stall when the whole shard is encoded in one call (before
  segments), for comparison;
- **process pool** (2 workers): throughput when every segment and its ``k+m`` fragments cross a
  pipe.
"""

from __future__ import annotations

import os
import threading
import time
from concurrent.futures import ProcessPoolExecutor
from typing import Any

from dataplane.agent.coding import Codec


def _encode_in_worker(args: tuple[int, int, bytes]) -> int:
    k, m, segment = args
    return sum(len(f) for f in Codec(k, m).encode(segment))


def _longest_stall_ms(work: Any) -> float:
    """The longest gap a thread sleeping 1 ms at a time sees while ``work()`` runs."""
    stalls: list[float] = []
    stop = threading.Event()

    def tick() -> None:
        while not stop.is_set():
            t0 = time.perf_counter()
            time.sleep(0.001)
            stalls.append(time.perf_counter() - t0)

    ticker = threading.Thread(target=tick, daemon=True)
    ticker.start()
    time.sleep(0.02)
    stalls.clear()
    try:
        work()
    finally:
        stop.set()
        ticker.join()
    return max(stalls, default=0.0) * 1e3


def measure_codec(k: int = 4, m: int = 2, *, total_bytes: int = 256 << 20, segment_bytes: int = 1 << 20) -> dict[str, float]:
    """Throughput (MB/s) and longest stall (ms) of the three ways (module docstring)."""
    codec = Codec(k, m)
    data = os.urandom(total_bytes)
    segments = [data[i : i + segment_bytes] for i in range(0, total_bytes, segment_bytes)]
    mb = total_bytes / 1e6

    def in_thread() -> None:
        for seg in segments:
            codec.encode(seg)

    t = time.perf_counter()
    in_thread()
    thread_s = time.perf_counter() - t
    stall_segment = _longest_stall_ms(in_thread)
    whole = data[: min(total_bytes, 128 << 20)]
    stall_whole = _longest_stall_ms(lambda: codec.encode(whole))
    with ProcessPoolExecutor(2) as pool:
        list(pool.map(_encode_in_worker, [(k, m, segments[0])] * 2))  # workers started and warm
        t = time.perf_counter()
        list(pool.map(_encode_in_worker, [(k, m, s) for s in segments], chunksize=4))
        pool_s = time.perf_counter() - t
    return {
        "in_thread_MBps": mb / thread_s,
        "in_thread_longest_stall_ms": stall_segment,
        "whole_shard_call_longest_stall_ms": stall_whole,
        "whole_shard_call_MiB": len(whole) / (1 << 20),
        "process_pool_MBps": mb / pool_s,
        "process_pool_vs_in_thread": (mb / pool_s) / (mb / thread_s),
    }
