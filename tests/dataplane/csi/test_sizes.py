"""The FUSE daemon's shard sizes: known ones kept, the others fetched once, the asked-for one first."""

from __future__ import annotations

import errno
import threading
import time

import pytest

from dataplane.csi.fusing import ReadError, Sizes


class Agent:
    """An agent's size answers: counts every request, can hold them, can fail one shard once."""

    def __init__(self, sizes: dict[int, int], *, fail_once: set[int] | None = None) -> None:
        self.sizes = sizes
        self.asked: list[int] = []
        self.fail_once = set(fail_once or ())
        self.gate = threading.Event()
        self.gate.set()
        self.lock = threading.Lock()

    def size(self, shard: int) -> int:
        self.gate.wait(10)
        with self.lock:
            self.asked.append(shard)
            if shard in self.fail_once:
                self.fail_once.discard(shard)
                raise ReadError(errno.EIO, f"shard {shard}: the agent answered 503")
        time.sleep(0.001)
        return self.sizes[shard]


def test_a_known_size_is_never_asked_and_each_unknown_one_is_fetched_once_however_many_ask() -> None:
    agent = Agent({i: 100 + i for i in range(200)})
    sizes = Sizes({0: 7}, list(range(1, 200)), agent.size, workers=8)
    assert sizes.get(0) == 7
    sizes.prefetch()
    answers: list[int] = []
    threads = [threading.Thread(target=lambda: answers.append(sizes.get(150))) for _ in range(10)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    deadline = time.monotonic() + 10
    while len(sizes.known) < 200 and time.monotonic() < deadline:
        time.sleep(0.01)
    sizes.close()
    assert answers == [250] * 10
    assert sizes.known == {0: 7, **{i: 100 + i for i in range(1, 200)}}
    assert sorted(agent.asked) == list(range(1, 200)), "every unknown size fetched exactly once, the known one never"


def test_the_size_a_lookup_needs_is_fetched_at_once_not_after_the_background_queue() -> None:
    agent = Agent({i: i for i in range(5000)})
    agent.gate.clear()  # the background workers are stuck on slow answers
    sizes = Sizes({}, list(range(5000)), agent.size, workers=2)
    sizes.prefetch()
    time.sleep(0.05)
    got: list[int] = []
    asker = threading.Thread(target=lambda: got.append(sizes.get(4321)))
    asker.start()
    time.sleep(0.05)
    agent.gate.set()
    asker.join(10)
    assert got == [4321]
    assert agent.asked.index(4321) < 10, "the asked-for size went ahead of the 5,000 queued ones"
    sizes.close()


def test_a_failed_size_fails_its_caller_and_is_asked_again_by_the_next() -> None:
    agent = Agent({3: 30}, fail_once={3})
    sizes = Sizes({}, [3], agent.size)
    with pytest.raises(ReadError):
        sizes.get(3)
    assert sizes.peek(3) is None
    assert sizes.get(3) == 30
    assert agent.asked == [3, 3]
