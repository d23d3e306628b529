"""The FUSE daemon of one volume: every shard of a DataSet as a read-only file, its bytes streamed
from the node's agent through the read API (which checks every segment before it sends it).

One process per published volume (``python -m dataplane.csi.fusing MANIFEST``), so a daemon that
dies takes only its own volume with it. What the pod sees then: the kernel aborts the FUSE
connection when the daemon's ``/dev/fuse`` descriptor closes, and every later access to a file the
daemon served (and to the volume's folder) fails at once with ``ENOTCONN`` ("Transport endpoint
is not connected"); a read already waiting for the daemon returns the same error. Nothing waits
for ever: a daemon that lives but gets no byte from the agent for ``read_timeout_s`` answers the
read with ``EIO``. Local replicas are bind mounts of the agent's files over their FUSE files: a
descriptor the pod already holds on one keeps reading from the local disk after the daemon died.

**Streaming with readahead.** Each open file has one :class:`RangeStream`: a thread that keeps a
single ranged ``GET`` open from the read position and buffers up to ``readahead_bytes`` ahead of
the reader. Reads that arrive out of order within the buffer (the kernel sends its own readahead
concurrently) are answered from it; a jump outside it restarts the stream at the new offset. The
page cache keeps what was read (``keep_cache``: a shard never changes under a DataSet uid).

**Sizes on demand.** The driver knows the sizes of local replicas; the others are asked of the
agent (one one-byte ranged ``GET`` each). The daemon asks for one before it mounts (an agent it
cannot reach, or that refuses it, fails the publish and kubelet retries), mounts, and resolves the
rest in the background (:class:`Sizes`); a lookup, ``stat`` or open of a file whose size is not known yet asks
for that one first. A pod's mount of a DataSet of 10^5 shards does not wait for 10^5 requests,
and a shard the agent cannot answer fails that file's lookup with ``EIO`` (asked again on the
next lookup), not the whole mount.
"""

from __future__ import annotations

import argparse
import errno
import http.client
import json
import logging
import os
import ssl
import stat
import sys
import threading
import time
from collections import deque
from collections.abc import Callable, Generator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import httpx

log = logging.getLogger(__name__)

#: The filesystem type in the mount table: ``fuse.kbl``.
SUBTYPE = "kbl"
#: How far behind the furthest read the stream keeps bytes, for reads the kernel sends out of order.
BACK_WINDOW = 2 << 20
CHUNK = 1 << 20
#: ``KBL_FUSE_TRACE=1``: every read and stream restart on the daemon's stderr (its ``.log`` in the state folder).
TRACE = bool(os.environ.get("KBL_FUSE_TRACE"))


class ReadError(OSError):
    """A read the agent could not answer (the FUSE read fails with ``EIO``)."""


@dataclass(frozen=True, slots=True)
class Manifest:
    """What a daemon serves: written by the driver as JSON, one per volume."""

    target: str
    shards_url: str  # ``<agent>/v1/namespaces/<ns>/datasets/<name>/shards/``
    token_file: str
    files: list[tuple[int, str, int | None]]  # (shard index, path in the volume, size if known)
    ca_file: str = ""
    cert_file: str = ""  # with key_file: the client certificate an agent demanding mutual TLS checks
    key_file: str = ""
    tls_name: str = ""  # the name the agent's certificate carries, checked on a connection to 127.0.0.1
    readahead_bytes: int = 8 << 20
    read_timeout_s: float = 30.0

    def to_json(self) -> str:
        return json.dumps({k: getattr(self, k) for k in self.__slots__})

    @classmethod
    def from_json(cls, raw: str) -> Manifest:
        data = json.loads(raw)
        data["files"] = [(int(i), str(p), None if s is None else int(s)) for i, p, s in data["files"]]
        return cls(**data)


class Agent:
    """The agent's read API as this daemon uses it: shard sizes and ranged streams."""

    def __init__(self, manifest: Manifest) -> None:
        self.manifest = manifest
        timeout = httpx.Timeout(manifest.read_timeout_s, connect=min(5.0, manifest.read_timeout_s))
        self.tls = ssl.create_default_context(cafile=manifest.ca_file or None)
        if manifest.cert_file:
            self.tls.load_cert_chain(manifest.cert_file, manifest.key_file or None)
        self.extensions = {"sni_hostname": manifest.tls_name} if manifest.tls_name else {}
        limits = httpx.Limits(max_connections=64, max_keepalive_connections=32)
        self.client = httpx.Client(timeout=timeout, verify=self.tls, limits=limits)

    def headers(self, extra: dict[str, str] | None = None) -> dict[str, str]:
        token = Path(self.manifest.token_file).read_text().strip()
        return {"Authorization": f"Bearer {token}", **(extra or {})}

    def size(self, shard: int) -> int:
        """The shard's length: the total of a one-byte range's ``Content-Range`` (``416``: empty)."""
        url = f"{self.manifest.shards_url}{shard}"
        response = self.client.get(url, headers=self.headers({"Range": "bytes=0-0"}), extensions=self.extensions)
        total = response.headers.get("content-range", "").rpartition("/")[2]
        if response.status_code in (206, 416) and total.isdigit():
            return int(total)
        if response.status_code == 200:
            return int(response.headers.get("content-length") or len(response.content))
        raise ReadError(errno.EIO, f"shard {shard}: the agent answered {response.status_code}: {response.text[:200]}")

    def stream(self, shard: int, start: int, end: int) -> Generator[bytes, None, None]:
        """Bytes ``[start, end)`` of a shard as they arrive, ``CHUNK`` at a time.

        One plain ``http.client`` connection per stream (a long sequential body: its buffered
        ``read(n)`` fills one buffer per chunk, where httpx joins 64 KiB pieces); the socket
        timeout is ``read_timeout_s``. Closing the generator closes the connection.
        """
        url = urlsplit(f"{self.manifest.shards_url}{shard}")
        timeout = self.manifest.read_timeout_s
        conn: http.client.HTTPConnection
        if url.scheme == "https":
            conn = _TlsConnection(url.hostname or "", url.port, timeout, self.tls, self.manifest.tls_name)
        else:
            conn = http.client.HTTPConnection(url.hostname or "", url.port, timeout=timeout)
        try:
            conn.request("GET", url.path, headers=self.headers({"Range": f"bytes={start}-{end - 1}"}))
            response = conn.getresponse()
            if response.status not in (200, 206):
                raise ReadError(errno.EIO, f"shard {shard}: the agent answered {response.status}: {response.read(200)!r}")
            while chunk := response.read(CHUNK):
                yield chunk
        finally:
            conn.close()


class _TlsConnection(http.client.HTTPSConnection):
    """HTTPS to an address whose certificate names something else (the agent's Service name)."""

    def __init__(self, host: str, port: int | None, timeout: float, context: ssl.SSLContext, server_name: str) -> None:
        super().__init__(host, port, timeout=timeout, context=context)
        self.tls_context = context
        self.server_name = server_name or host

    def connect(self) -> None:
        http.client.HTTPConnection.connect(self)
        self.sock = self.tls_context.wrap_socket(self.sock, server_hostname=self.server_name)


@dataclass
class RangeStream:
    """One open file's stream: a thread appends the agent's chunks to ``chunks`` (``(offset, bytes)``,
    contiguous from ``start`` to ``end``); reads slice them, chunks far behind the reader are dropped
    whole (never a copy of the window)."""

    agent: Agent
    shard: int
    size: int
    readahead: int
    timeout_s: float
    chunks: deque[tuple[int, bytes]] = field(default_factory=deque)
    start: int = 0
    end: int = 0
    generation: int = 0
    done: bool = True
    error: BaseException | None = None
    cond: threading.Condition = field(default_factory=threading.Condition)
    closed: bool = False

    def _restart(self, offset: int) -> None:
        """Drop the buffer, start a new fill at ``offset`` (the old thread sees its generation pass)."""
        if TRACE:
            print("restart", self.shard, offset, time.monotonic(), file=sys.stderr)
        self.generation += 1
        self.chunks.clear()
        self.start = self.end = offset
        self.error = None
        self.done = offset >= self.size
        if not self.done:
            threading.Thread(target=self._fill, args=(self.generation, offset), daemon=True, name=f"kbl-fuse-{self.shard}").start()

    def _fill(self, generation: int, offset: int) -> None:
        try:
            response = self.agent.stream(self.shard, offset, self.size)
            try:
                for chunk in response:
                    with self.cond:
                        while generation == self.generation and not self.closed and self.end - self.start >= self.readahead + BACK_WINDOW:
                            self.cond.wait(1.0)
                        if generation != self.generation or self.closed:
                            return
                        self.chunks.append((self.end, chunk))
                        self.end += len(chunk)
                        self.cond.notify_all()
            finally:
                response.close()
        except (httpx.HTTPError, http.client.HTTPException, OSError) as exc:
            with self.cond:
                if generation == self.generation:
                    self.error = exc
                    self.cond.notify_all()
            return
        with self.cond:
            if generation == self.generation:
                self.done = True
                self.cond.notify_all()

    def _slice(self, a: int, b: int) -> bytes:
        parts = []
        for at, chunk in self.chunks:
            if at >= b:
                break
            if at + len(chunk) <= a:
                continue
            parts.append(chunk[max(a - at, 0) : min(b - at, len(chunk))])
        return parts[0] if len(parts) == 1 else b"".join(parts)

    def ready(self, offset: int, length: int) -> bytes | None:
        """The bytes at once when the stream already holds them (no thread hop), else ``None``."""
        end = min(self.size, offset + length)
        with self.cond:
            if self.error is None and self.start <= offset and end <= self.end:
                data = self._slice(offset, end) if offset < end else b""
                self._drop_behind(end)
                return data
        return None

    def _drop_behind(self, end: int) -> None:
        while self.chunks and self.chunks[0][0] + len(self.chunks[0][1]) <= end - BACK_WINDOW:
            at, chunk = self.chunks.popleft()
            self.start = at + len(chunk)
        self.cond.notify_all()

    def read(self, offset: int, length: int) -> bytes:
        """Bytes ``[offset, offset + length)`` (fewer at the end of the shard); :class:`ReadError` when the
        agent fails or sends nothing for ``timeout_s``."""
        end = min(self.size, offset + length)
        if offset >= end:
            return b""
        with self.cond:
            if offset < self.start or offset > self.end + self.readahead or (self.done and offset >= self.end) or self.error:
                self._restart(offset)
            while self.end < end:
                if self.error is not None:
                    raise ReadError(errno.EIO, f"shard {self.shard}: {self.error}")
                if self.done:
                    raise ReadError(errno.EIO, f"shard {self.shard}: the agent's stream ended at {self.end} of {self.size}")
                have = self.end
                self.cond.wait(self.timeout_s)
                if self.end == have and self.error is None and not self.done:
                    raise ReadError(errno.EIO, f"shard {self.shard}: no byte from the agent for {self.timeout_s} s")
            data = self._slice(offset, end)
            self._drop_behind(end)
            return data

    def close(self) -> None:
        with self.cond:
            self.closed = True
            self.generation += 1
            self.cond.notify_all()


@dataclass(frozen=True, slots=True)
class Node:
    """One inode of the volume's tree: a folder (``children``) or a shard's file."""

    inode: int
    name: bytes
    parent: int
    shard: int = -1
    size: int = 0
    children: dict[bytes, int] = field(default_factory=dict)

    @property
    def is_dir(self) -> bool:
        return self.shard < 0


def tree(files: list[tuple[int, str, int]]) -> dict[int, Node]:
    """Inodes of the volume: folders made from the shards' names, root inode 1."""
    nodes: dict[int, Node] = {1: Node(1, b"", 1)}
    for shard, path, size in files:
        parent = nodes[1]
        parts = [p.encode() for p in Path(path).parts]
        for part in parts[:-1]:
            found = parent.children.get(part)
            if found is None:
                found = len(nodes) + 1
                nodes[found] = Node(found, part, parent.inode)
                parent.children[part] = found
            parent = nodes[found]
        inode = len(nodes) + 1
        nodes[inode] = Node(inode, parts[-1], parent.inode, shard=shard, size=size)
        parent.children[parts[-1]] = inode
    return nodes


class Sizes:
    """Shard sizes: the known ones, and the others asked of the agent on demand and in the background.

    :meth:`get` answers from what is known, or asks for that shard at once (the caller waits
    only for its own file); :meth:`prefetch` asks for every unknown size with ``workers``
    threads, in the manifest's order, skipping those already known. Each size is fetched once
    when it succeeds; a failed fetch raises to its caller and is tried again by the next.
    """

    def __init__(self, known: dict[int, int], unknown: list[int], fetch: Callable[[int], int], workers: int = 16) -> None:
        self.known = dict(known)
        self.unknown = list(unknown)
        self.fetch = fetch
        self.workers = workers
        self.lock = threading.Lock()
        self.fetching: dict[int, threading.Event] = {}
        self.pool: ThreadPoolExecutor | None = None

    def peek(self, shard: int) -> int | None:
        return self.known.get(shard)

    def get(self, shard: int) -> int:
        """The shard's size, fetched now if no one knows it yet (or waiting for the fetch under way)."""
        while True:
            with self.lock:
                size = self.known.get(shard)
                if size is not None:
                    return size
                running = self.fetching.get(shard)
                if running is None:
                    running = self.fetching[shard] = threading.Event()
                    mine = True
                else:
                    mine = False
            if not mine:
                running.wait()
                with self.lock:
                    if shard in self.known:
                        return self.known[shard]
                continue  # that fetch failed: try it ourselves
            try:
                size = self.fetch(shard)
                with self.lock:
                    self.known[shard] = size
                return size
            finally:
                with self.lock:
                    self.fetching.pop(shard, None)
                running.set()

    def _quiet(self, shard: int) -> None:
        try:
            self.get(shard)
        except (OSError, httpx.HTTPError) as exc:  # a lookup of that file asks again and reports it
            log.warning("size of shard %d: %s", shard, exc)

    def prefetch(self) -> None:
        """Ask for every unknown size in the background (returns at once)."""
        if not self.unknown or self.pool is not None:
            return
        self.pool = ThreadPoolExecutor(self.workers, thread_name_prefix="kbl-fuse-size")
        for shard in self.unknown:
            self.pool.submit(self._quiet, shard)

    def close(self) -> None:
        if self.pool is not None:
            self.pool.shutdown(wait=False, cancel_futures=True)


def serve(manifest: Manifest, *, ready: Callable[[], None] = lambda: None) -> None:
    """Mount, resolve the unknown sizes in the background, serve until unmounted (or killed)."""
    import pyfuse3  # type: ignore[import-not-found,unused-ignore]
    import trio

    # The loop answering the kernel and the thread filling the streams share the GIL: hand it over
    # in well under the default 5 ms, or a read waits on a thread that has its bytes already.
    sys.setswitchinterval(0.0005)
    agent = Agent(manifest)
    sizes = Sizes(
        {i: s for i, _, s in manifest.files if s is not None}, [i for i, _, s in manifest.files if s is None], agent.size
    )
    if sizes.unknown:  # one answer before mounting: an agent that cannot be reached (or refuses us) fails the publish
        sizes.get(sizes.unknown[0])
    nodes = tree([(i, p, s if s is not None else -1) for i, p, s in manifest.files])
    uid, gid = os.getuid(), os.getgid()

    class Volume(pyfuse3.Operations):  # type: ignore[misc,unused-ignore]
        def __init__(self) -> None:
            super().__init__()
            self.handles: dict[int, RangeStream] = {}
            self.next_fh = 1

        async def size(self, node: Node) -> int:
            if node.is_dir:
                return 0
            known = sizes.peek(node.shard)
            if known is not None:
                return known
            try:
                found: int = await trio.to_thread.run_sync(sizes.get, node.shard)
            except (OSError, httpx.HTTPError) as exc:
                log.warning("size of shard %d: %s", node.shard, exc)
                raise pyfuse3.FUSEError(errno.EIO) from None
            return found

        async def attrs(self, node: Node) -> Any:
            size = await self.size(node)
            a = pyfuse3.EntryAttributes()
            a.st_ino = node.inode
            a.st_mode = (stat.S_IFDIR | 0o555) if node.is_dir else (stat.S_IFREG | 0o444)
            a.st_nlink = 2 if node.is_dir else 1
            a.st_size = size
            a.st_uid, a.st_gid = uid, gid
            a.st_blksize = 1 << 20
            a.st_blocks = (size + 511) // 512
            a.attr_timeout = a.entry_timeout = 3600.0  # the tree never changes while mounted
            return a

        def node(self, inode: int) -> Node:
            found = nodes.get(inode)
            if found is None:
                raise pyfuse3.FUSEError(errno.ENOENT)
            return found

        async def getattr(self, inode: int, ctx: Any = None) -> Any:
            return await self.attrs(self.node(inode))

        async def lookup(self, parent_inode: int, name: bytes, ctx: Any = None) -> Any:
            parent = self.node(parent_inode)
            if name == b".":
                return await self.attrs(parent)
            if name == b"..":
                return await self.attrs(nodes[parent.parent])
            child = parent.children.get(name)
            if child is None:
                raise pyfuse3.FUSEError(errno.ENOENT)
            return await self.attrs(nodes[child])

        async def opendir(self, inode: int, ctx: Any) -> int:
            if not self.node(inode).is_dir:
                raise pyfuse3.FUSEError(errno.ENOTDIR)
            return inode

        async def readdir(self, fh: int, start_id: int, token: Any) -> None:
            children = sorted(self.node(fh).children.items())
            for i, (name, child) in enumerate(children[start_id:], start=start_id + 1):
                if not pyfuse3.readdir_reply(token, name, await self.attrs(nodes[child]), i):
                    break

        async def releasedir(self, fh: int) -> None:
            return None

        async def open(self, inode: int, flags: int, ctx: Any) -> Any:
            node = self.node(inode)
            if node.is_dir:
                raise pyfuse3.FUSEError(errno.EISDIR)
            if flags & (os.O_WRONLY | os.O_RDWR | os.O_TRUNC | os.O_APPEND):
                raise pyfuse3.FUSEError(errno.EROFS)
            fh = self.next_fh
            self.next_fh += 1
            stream = RangeStream(agent, node.shard, await self.size(node), manifest.readahead_bytes, manifest.read_timeout_s)
            with stream.cond:
                stream._restart(0)  # the first bytes are on their way before the first read arrives
            self.handles[fh] = stream
            return pyfuse3.FileInfo(fh=fh, keep_cache=True)

        async def read(self, fh: int, off: int, size: int) -> bytes:
            if TRACE:
                print("read", off, size, time.monotonic(), file=sys.stderr)
            stream = self.handles.get(fh)
            if stream is None:
                raise pyfuse3.FUSEError(errno.EBADF)
            quick = stream.ready(off, size)
            if quick is not None:
                return quick
            try:
                data: bytes = await trio.to_thread.run_sync(stream.read, off, size)
            except OSError as exc:
                log.warning("%s", exc)
                raise pyfuse3.FUSEError(errno.EIO) from None
            return data

        async def release(self, fh: int) -> None:
            stream = self.handles.pop(fh, None)
            if stream is not None:
                stream.close()

        async def statfs(self, ctx: Any) -> Any:
            s = pyfuse3.StatvfsData()
            s.f_bsize = s.f_frsize = 1 << 20
            s.f_blocks = sum(sizes.known.values()) // (1 << 20) + 1  # the sizes known so far
            s.f_files = len(nodes)
            s.f_namemax = 255
            return s

    options = set(pyfuse3.default_options) | {"ro", "allow_other", "fsname=kbl-data", f"subtype={SUBTYPE}", "noatime"}
    pyfuse3.init(Volume(), manifest.target, options)
    ready()
    sizes.prefetch()
    try:
        trio.run(pyfuse3.main)
    finally:
        sizes.close()
        pyfuse3.close(unmount=True)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m dataplane.csi.fusing", description="serve one kbl DataSet volume over FUSE")
    parser.add_argument("manifest", help="the volume's manifest (JSON, written by the driver)")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s kbl-fuse %(message)s")
    try:
        serve(Manifest.from_json(Path(args.manifest).read_text()))
    except (OSError, httpx.HTTPError) as exc:
        print(f"kbl-fuse: {exc}", file=sys.stderr)
        return 3
    return 0


if __name__ == "__main__":
    sys.exit(main())
