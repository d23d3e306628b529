"""Erasure coding through a maintained library (pyeclib over liberasurecode), never home-made.

The agent calls it one segment at a time (:mod:`dataplane.agent.segments`): a 1 MiB segment
encodes in well under a millisecond with ISA-L, so a call holds the GIL no longer than that and
the agent's other threads (its read API, its reconcile loop) keep running between calls. A
process pool would copy every segment and its ``k+m`` fragments through a pipe, which costs more
than the encode itself (``kbl bench data`` measures both).

:class:`Codec` wraps ``pyeclib.ec_iface.ECDriver`` for one ``k+m``: the ISA-L Reed-Solomon
backend (``isa_l_rs_vand``) when the wheel carries it, else liberasurecode's own
(``liberasurecode_rs_vand``). A fragment is exactly what liberasurecode produces: an 80-byte
header (fragment index, fragment size, original data size, backend id and version) followed by
the data, so any ``k`` fragments decode the shard and any ``k`` rebuild a lost one, and the
fragment files on disk can be read by any liberasurecode user (OpenStack Swift among them).
"""

from __future__ import annotations

import functools
from collections.abc import Sequence
from typing import Any

from dataplane.agent.storing import AgentError

#: Preferred backends, fastest first.
BACKENDS = ("isa_l_rs_vand", "liberasurecode_rs_vand")


class CodingError(AgentError):
    """The erasure library refused (too few fragments, inconsistent fragments, bad k+m)."""


@functools.cache
def backend() -> str:
    """The first backend of :data:`BACKENDS` that this machine's liberasurecode can load."""
    from pyeclib.ec_iface import ECDriver

    for name in BACKENDS:
        try:
            ECDriver(k=2, m=1, ec_type=name).encode(b"probe")
        except Exception:  # noqa: S112 - an absent backend raises one of several pyeclib errors
            continue
        return name
    raise CodingError(f"no erasure backend of {BACKENDS} is available in liberasurecode")


@functools.cache
def codec(k: int, m: int) -> Codec:
    return Codec(k, m)


class Codec:
    """Encode a shard into ``k+m`` fragments, decode it from any ``k``, rebuild a lost fragment.

    Parameters
    ----------
    k, m:
        Data and parity fragments (``m`` may be 0: striping without parity).
    """

    def __init__(self, k: int, m: int) -> None:
        from pyeclib.ec_iface import ECDriver

        self.k, self.m = k, m
        self.backend = backend()
        # liberasurecode needs m >= 1; k+0 is served by the same backend with one parity fragment
        # that is simply never stored.
        self._driver: Any = ECDriver(k=k, m=max(1, m), ec_type=self.backend)

    @property
    def scheme(self) -> str:
        return f"{self.backend}:{self.k}+{self.m}"

    def encode(self, data: bytes) -> list[bytes]:
        """The ``k+m`` fragments of ``data``, in fragment index order."""
        try:
            fragments: list[bytes] = self._driver.encode(data)
        except Exception as exc:
            raise CodingError(f"encode failed: {exc}") from None
        return fragments[: self.k + self.m]

    def decode(self, fragments: Sequence[bytes]) -> bytes:
        """The shard from any ``k`` (or more) fragments."""
        if len(fragments) < self.k:
            raise CodingError(f"{len(fragments)} fragments, {self.k} needed")
        try:
            data: bytes = self._driver.decode(list(fragments))
        except Exception as exc:
            raise CodingError(f"decode failed: {exc}") from None
        return data

    def rebuild(self, fragments: Sequence[bytes], missing: int) -> bytes:
        """Fragment ``missing`` rebuilt from any ``k`` others."""
        try:
            out: list[bytes] = self._driver.reconstruct(list(fragments), [missing])
        except Exception as exc:
            raise CodingError(f"rebuild of fragment {missing} failed: {exc}") from None
        return out[0]

    @functools.cache  # noqa: B019 - one Codec per k+m for the process's life (:func:`codec`)
    def unit(self, segment_bytes: int) -> int:
        """The length of one fragment segment of a full shard segment (liberasurecode's header included)."""
        return len(self.encode(bytes(segment_bytes))[0])

    def index_of(self, fragment: bytes) -> int:
        """The fragment index written in a fragment's header."""
        meta: Any = self._driver.get_metadata(fragment, formatted=True)
        return int(meta["index"])

    def shard_bytes(self, fragment: bytes) -> int:
        """The original shard length written in a fragment's header."""
        meta: Any = self._driver.get_metadata(fragment, formatted=True)
        return int(meta["orig_data_size"])
