"""Commit lanes: a run's commits packed and inserted on several threads, made durable one at a time, in order.

Packing a commit's Arrow tables and DuckDB's insert cost about 1.3 core-ms per CLIP-Scope image (257 tokens x
32 pairs, bench/index_throughput.py), so one writing thread caps indexing below 800 images/s. With N lanes,
commit n is packed and inserted on a thread while the other lanes work on theirs, but it becomes durable (its
COMMIT, or its shard's rename) only after commit n - 1 has, so a kill at any moment leaves a prefix of the run's
commits, exactly as one lane does. A checkpoint due after commit c runs once c is durable and before any later
commit opens its transaction, since DuckDB will not checkpoint while other write transactions are open.

One lane runs every commit on the calling thread, start to end, before `submit` returns.
"""

from __future__ import annotations

import threading
from collections import deque
from collections.abc import Callable
from concurrent.futures import Future, ThreadPoolExecutor


class Abandoned(Exception):
    """An earlier commit failed, so this one was rolled back instead of made durable."""


class Turn:
    """One commit's place in the order: when it may open its transaction and when it may become durable."""

    def __init__(self, lanes: OrderedLanes, number: int) -> None:
        """Commit `number` of lanes."""
        self._lanes = lanes
        self.number = number

    def begin(self) -> None:
        """Wait until every checkpoint due before this commit has run (raises Abandoned after a failure)."""
        self._lanes._wait(lambda: not any(c < self.number for c in self._lanes._checkpoints))

    def durable(self) -> None:
        """Wait until the previous commit is durable (raises Abandoned after a failure); this one may follow."""
        self._lanes._wait(lambda: self._lanes._durable == self.number)


class OrderedLanes:
    """Runs commit jobs on `lanes` threads; each job calls turn.begin() before its transaction and turn.durable()
    right before it makes its commit durable, and the lanes keep those points in submission order."""

    def __init__(self, lanes: int) -> None:
        """Start the threads (none for one lane)."""
        self.lanes = max(1, lanes)
        self._pool = ThreadPoolExecutor(self.lanes, thread_name_prefix="saetui-commit") if self.lanes > 1 else None
        self._changed = threading.Condition()
        self._submitted = 0
        self._durable = 0  # commits 0 .. _durable - 1 are durable
        self._checkpoints: set[int] = set()  # commits whose checkpoint has not run yet
        self._error: BaseException | None = None
        self._futures: deque[Future[None]] = deque()

    def submit(self, job: Callable[[Turn], None], checkpoint: Callable[[], None] | None = None) -> None:
        """Run job (and then checkpoint, if given) as the next commit; with several lanes, waits while every lane
        is busy and raises the error of an earlier commit that failed."""
        self.raise_error()
        with self._changed:  # the lanes read these while they wait
            turn = Turn(self, self._submitted)
            self._submitted += 1
            if checkpoint is not None:
                self._checkpoints.add(turn.number)
        if self._pool is None:
            self._run(job, checkpoint, turn)
            return
        with self._changed:
            self._changed.wait_for(lambda: self._submitted - 1 - self._durable < self.lanes or self._error is not None)
        self.raise_error()
        self._futures.append(self._pool.submit(self._run, job, checkpoint, turn))
        while self._futures and self._futures[0].done():
            self._futures.popleft()

    def _run(self, job: Callable[[Turn], None], checkpoint: Callable[[], None] | None, turn: Turn) -> None:
        """One commit: the job, then (once it is durable) its checkpoint; a failure stops the lanes' later commits.

        On one lane the caller gets the error itself and the writer goes on: a failed commit never happened.
        """
        try:
            job(turn)
            with self._changed:
                self._durable += 1
                self._changed.notify_all()
            if checkpoint is not None:
                checkpoint()
        except BaseException as error:
            with self._changed:
                if self._pool is None:
                    self._submitted = self._durable
                elif self._error is None:
                    self._error = error
                self._checkpoints.discard(turn.number)
                self._changed.notify_all()
            if self._pool is None:
                raise
            return
        with self._changed:
            self._checkpoints.discard(turn.number)
            self._changed.notify_all()

    def _wait(self, ready: Callable[[], bool]) -> None:
        """Wait until ready() holds; raise Abandoned if a commit failed meanwhile."""
        with self._changed:
            self._changed.wait_for(lambda: ready() or self._error is not None)
            if self._error is not None:
                raise Abandoned("an earlier commit failed")

    def raise_error(self) -> None:
        """Raise the first real error a commit met, if any (never the Abandoned of the commits after it)."""
        if self._error is not None:
            raise self._error

    def drain(self) -> None:
        """Wait for every submitted commit, then raise the first error, if any."""
        while self._futures:
            self._futures.popleft().result()
        self.raise_error()

    def close(self) -> None:
        """Wait for the commits in flight and stop the threads."""
        if self._pool is not None:
            self._pool.shutdown(wait=True)
