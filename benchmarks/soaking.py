"""Soaking the extender: many concurrent kube-scheduler-shaped calls over real HTTP on loopback.

:func:`soak` starts ``kbl serve --snapshot`` in a child process on ``127.0.0.1`` (an ephemeral
port), waits for ``/readyz``, then drives it from this process with ``concurrency`` keep-alive
HTTP/1.1 connections (a small asyncio client that writes the request bytes and reads the
``Content-Length`` body, so the client costs little next to the server). Each connection sends
filter and prioritize calls in turn, ``NodeNames`` form, with ``candidates`` random node names
and a pod reading a random shard range, until ``max_requests`` are done or ``max_seconds`` have
passed: the run is bounded in both and stops by itself. Before the concurrent run, one client
sends ``single_requests`` sequential calls: the single-client figure to read the concurrent one
against (at concurrency ``c`` a one-loop server queues, so latency grows about ``c``-fold while
throughput does not).

Every reply is checked: status 200, JSON, filter names a subset of the offered names, one score
per offered node within 0..10. The child's resident memory (``VmRSS``) is sampled every
``rss_interval_s``; the report has it after start, after warm-up (the first tenth of the
requests), at the end and at its peak.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import random
import socket
import subprocess
import sys
import tempfile
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import orjson

from benchmarks.measuring import percentile
from benchmarks.model import bench_pod, make_snapshot
from benchmarks.serving import free_port


@dataclass(frozen=True, slots=True)
class SoakSettings:
    """The shape and bounds of one soak (times in seconds)."""

    nodes: int = 5000
    shards: int = 4096
    candidates: int = 500
    concurrency: int = 64
    max_requests: int = 200_000
    max_seconds: float = 60.0
    single_requests: int = 500
    rss_interval_s: float = 0.25
    start_timeout_s: float = 120.0
    seed: int = 0


@dataclass(slots=True)
class Phase:
    """Latencies (ms) and errors of one phase of the soak."""

    concurrency: int
    requests: int = 0
    errors: int = 0
    seconds: float = 0.0
    latencies_ms: list[float] = field(default_factory=list, repr=False)
    error_samples: list[str] = field(default_factory=list)

    def summary(self) -> dict[str, Any]:
        lat = self.latencies_ms
        return {
            "concurrency": self.concurrency,
            "requests": self.requests,
            "errors": self.errors,
            "seconds": round(self.seconds, 2),
            "requests_per_s": round(self.requests / self.seconds, 1) if self.seconds else 0.0,
            "p50_ms": round(percentile(lat, 50), 3) if lat else None,
            "p99_ms": round(percentile(lat, 99), 3) if lat else None,
            "max_ms": round(max(lat), 3) if lat else None,
            "error_samples": self.error_samples[:5],
        }


@dataclass(slots=True)
class SoakReport:
    settings: SoakSettings
    single: Phase
    loaded: Phase
    rss_mib: dict[str, float]

    def to_json(self) -> dict[str, Any]:
        return {
            "settings": asdict(self.settings),
            "single_client": self.single.summary(),
            "concurrent": self.loaded.summary(),
            "rss_mib": self.rss_mib,
        }


def rss_mib(pid: int) -> float:
    """Resident memory of process ``pid`` in MiB (Linux ``/proc``); 0 if it is gone."""
    try:
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) / 1024
    except OSError:
        pass
    return 0.0




def request_bodies(cfg: SoakSettings, names: list[str], count: int = 64) -> list[tuple[list[str], bytes]]:
    """``count`` prepared ``ExtenderArgs`` bodies (offered names, encoded body)."""
    rng = random.Random(cfg.seed)
    out = []
    for i in range(count):
        offered = rng.sample(names, min(cfg.candidates, len(names)))
        span = rng.choice((1, 4, 16, 64))
        first = rng.randrange(0, max(1, cfg.shards - span))
        body = {"Pod": bench_pod(f"soak-{i}", first, span), "Nodes": None, "NodeNames": offered}
        out.append((offered, orjson.dumps(body)))
    return out


class _Connection:
    """One keep-alive HTTP/1.1 connection speaking just enough of the protocol."""

    def __init__(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self.reader = reader
        self.writer = writer

    @classmethod
    async def open(cls, port: int) -> _Connection:
        reader, writer = await asyncio.open_connection("127.0.0.1", port)
        return cls(reader, writer)

    async def post(self, path: str, body: bytes) -> tuple[int, bytes]:
        head = f"POST {path} HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Type: application/json\r\nContent-Length: {len(body)}\r\n\r\n"
        self.writer.write(head.encode() + body)
        await self.writer.drain()
        raw = await self.reader.readuntil(b"\r\n\r\n")
        lines = raw.decode("latin-1").split("\r\n")
        status = int(lines[0].split(" ", 2)[1])
        length = None
        for line in lines[1:]:
            key, _, value = line.partition(":")
            if key.strip().lower() == "content-length":
                length = int(value.strip())
        if length is None:
            raise ValueError("reply without Content-Length")
        return status, await self.reader.readexactly(length)

    async def close(self) -> None:
        self.writer.close()
        with contextlib.suppress(OSError):
            await self.writer.wait_closed()


def check_reply(verb: str, offered: list[str], status: int, data: bytes) -> str | None:
    """Why a reply is wrong, or ``None`` when it is a valid answer to the offered names."""
    if status != 200:
        return f"{verb}: HTTP {status}: {data[:200]!r}"
    reply = orjson.loads(data)
    if verb == "filter":
        passed = reply.get("NodeNames")
        if not isinstance(passed, list) or not set(passed) <= set(offered) or reply.get("Error"):
            return f"filter: bad reply {str(reply)[:200]}"
        return None
    if not isinstance(reply, list) or [e.get("Host") for e in reply] != offered:
        return "prioritize: hosts do not match the offered names"
    if any(not isinstance(e.get("Score"), int) or not 0 <= e["Score"] <= 10 for e in reply):
        return "prioritize: score outside 0..10"
    return None


async def _drive(port: int, bodies: list[tuple[list[str], bytes]], phase: Phase, max_requests: int, max_seconds: float) -> None:
    started = time.perf_counter()
    deadline = started + max_seconds
    issued = 0

    async def worker(k: int) -> None:
        nonlocal issued
        conn = await _Connection.open(port)
        try:
            i = k
            while issued < max_requests and time.perf_counter() < deadline:
                issued += 1
                offered, body = bodies[i % len(bodies)]
                verb = "filter" if i % 2 == 0 else "prioritize"
                i += 1
                t0 = time.perf_counter()
                try:
                    status, data = await conn.post(f"/{verb}", body)
                    problem = check_reply(verb, offered, status, data)
                except (OSError, ValueError, asyncio.IncompleteReadError) as exc:
                    problem = f"{verb}: {type(exc).__name__}: {exc}"
                    await conn.close()
                    conn = await _Connection.open(port)
                phase.latencies_ms.append((time.perf_counter() - t0) * 1000)
                phase.requests += 1
                if problem is not None:
                    phase.errors += 1
                    phase.error_samples.append(problem)
        finally:
            await conn.close()

    await asyncio.gather(*(worker(k) for k in range(phase.concurrency)))
    phase.seconds = time.perf_counter() - started


async def _sample_rss(pid: int, interval_s: float, samples: list[tuple[int, float]], progress: Phase, stop: asyncio.Event) -> None:
    while not stop.is_set():
        samples.append((progress.requests, rss_mib(pid)))
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(stop.wait(), interval_s)
    samples.append((progress.requests, rss_mib(pid)))


def _wait_ready(proc: subprocess.Popen[bytes], port: int, timeout_s: float) -> None:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise RuntimeError(f"kbl serve exited with {proc.returncode} before it was ready")
        try:
            with socket.create_connection(("127.0.0.1", port), timeout=1) as s:
                s.sendall(b"GET /readyz HTTP/1.1\r\nHost: 127.0.0.1\r\nConnection: close\r\n\r\n")
                if s.recv(64).startswith(b"HTTP/1.1 200"):
                    return
        except OSError:
            pass
        time.sleep(0.1)
    raise TimeoutError(f"kbl serve was not ready after {timeout_s} s")


def soak(cfg: SoakSettings) -> SoakReport:
    """Run one bounded soak (module docstring) and return its report."""
    with tempfile.TemporaryDirectory(prefix="kbl-soak-") as tmp:
        snap = Path(tmp) / "snapshot.json"
        make_snapshot(snap, nodes=cfg.nodes, replicas_total=3 * cfg.shards, datasets=1, seed=cfg.seed)
        names = [o["metadata"]["name"] for o in orjson.loads(snap.read_bytes())["items"] if o.get("kind") == "Node"]
        port = free_port()
        command = [sys.executable, "-m", "kbl", "serve", "--snapshot", str(snap), "--host", "127.0.0.1", "--port", str(port)]
        env = {**os.environ, "PYTHONUNBUFFERED": "1"}
        proc = subprocess.Popen([*command, "--log-level", "warning"], stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, env=env)
        try:
            _wait_ready(proc, port, cfg.start_timeout_s)
            bodies = request_bodies(cfg, names)
            single = Phase(1)
            loaded = Phase(cfg.concurrency)
            samples: list[tuple[int, float]] = []

            async def main() -> None:
                await _drive(port, bodies, single, cfg.single_requests, cfg.max_seconds)
                stop = asyncio.Event()
                sampler = asyncio.create_task(_sample_rss(proc.pid, cfg.rss_interval_s, samples, loaded, stop))
                await _drive(port, bodies, loaded, cfg.max_requests, cfg.max_seconds)
                stop.set()
                await sampler

            start_rss = rss_mib(proc.pid)
            asyncio.run(main())
            warm = loaded.requests // 10
            after_warm = [r for n, r in samples if n >= warm] or [samples[-1][1]]
            rss = {
                "start": round(start_rss, 1),
                "after_warmup": round(after_warm[0], 1),
                "end": round(samples[-1][1], 1),
                "peak": round(max(r for _, r in samples), 1),
            }
            return SoakReport(cfg, single, loaded, rss)
        finally:
            proc.terminate()
            try:
                proc.wait(10)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait(10)
            if proc.stderr is not None:
                proc.stderr.close()
