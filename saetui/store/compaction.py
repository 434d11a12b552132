"""Shard compaction: while a live run goes on, every FANOUT shards of a level are rewritten into one shard of the
next level, so readers attach tens of files instead of one per commit.

Measured on 2 cores (one shard per commit, before compaction existed): opening a reader cost about 1.9 ms per
shard (2.8 s at 1,500 shards), a query over `activations` 1.2 s, and under the usual limit of 1,024 open files
a reader of 1,500 shards failed; ImageNet-1k at 256 images per commit makes 5,000. Level 0 is the commits;
FANOUT of them make a level-1 shard, FANOUT of those a level-2 shard (65,536 images at 256 per commit), the top
level. Each level has its own thread, so a long level-1 compaction never holds back the commits' level, and each
image is rewritten at most LEVELS times before the final merge. A compaction publishes its shard the way a commit
does (written aside, renamed into place) and only then deletes its inputs; a kill in between leaves inputs that
the new shard covers, which nobody reads (saetui.store.shards).
"""

from __future__ import annotations

import threading
from pathlib import Path

import duckdb

from saetui.store import shards
from saetui.store.schema import CodeLayout

FANOUT = 16
LEVELS = 2
INTERRUPT_SECONDS = 0.05  # how often close() interrupts a compaction until its thread ends


class Compactor:
    """Background threads, one per level below the top, that compact a writer session's published shards."""

    def __init__(self, db: Path, layout: CodeLayout, session: int, fanout: int = FANOUT, levels: int = LEVELS) -> None:
        """Start the threads for the shards of one writer session of db."""
        if fanout < 2:
            raise ValueError(f"a compaction needs at least 2 shards, not {fanout}")
        self.db, self.layout, self.session, self.fanout = db, layout, session, fanout
        self._changed = threading.Condition()
        self._generation = 0  # grows with every shard published
        self._stopping = False
        self._error: BaseException | None = None
        self._active: dict[int, duckdb.DuckDBPyConnection] = {}
        self._threads = [
            threading.Thread(target=self._loop, args=(level,), name=f"saetui-compact-{level}", daemon=True)
            for level in range(levels)
        ]
        for thread in self._threads:
            thread.start()

    def published(self) -> None:
        """Tell the threads a shard was published."""
        with self._changed:
            self._generation += 1
            self._changed.notify_all()

    def raise_error(self) -> None:
        """Raise the error a compaction met, if any (its inputs are still published: nothing is lost)."""
        if self._error is not None:
            raise self._error

    def close(self) -> None:
        """Stop the threads, interrupting the compactions under way (their partial shards are deleted).

        A compaction runs several statements and an interrupt stops only the one running, so it is repeated until
        the thread has let go."""
        with self._changed:
            self._stopping = True
            self._changed.notify_all()
        for thread in self._threads:
            while thread.is_alive():
                with self._changed:
                    for con in self._active.values():
                        con.interrupt()
                thread.join(INTERRUPT_SECONDS)

    def _loop(self, level: int) -> None:
        """Compact groups of the level's shards whenever enough are published, until close()."""
        seen = -1
        while True:
            with self._changed:
                while not self._stopping and self._generation == seen:
                    self._changed.wait()
                if self._stopping:
                    return
                seen = self._generation
            try:
                while (group := self._group(level)) is not None and self._compact(level, group):
                    self.published()
            except BaseException as error:  # handed to the writer, which raises it
                with self._changed:
                    if not self._stopping and self._error is None:
                        self._error = error
                return

    def _group(self, level: int) -> list[shards.Shard] | None:
        """The first FANOUT consecutive shards of the level, or None while there are fewer."""
        size = self.fanout**level
        found = [s for s in shards.listing(self.db)[0] if s.session == self.session and s.commits == size]
        group = found[: self.fanout]
        if len(group) < self.fanout or any(b.first != a.last + 1 for a, b in zip(group, group[1:], strict=False)):
            return None
        return group

    def _compact(self, level: int, group: list[shards.Shard]) -> bool:
        """Rewrite the group into one published shard and delete it; False if close() stopped it first."""
        final = shards.shard_path(self.db, self.session, group[0].first, group[-1].last)
        con, temporary = shards.new_shard(final, self.layout)
        with self._changed:
            if self._stopping:
                con.close()
                shards.discard(temporary)
                return False
            self._active[level] = con
        try:
            shards.copy_rows(con, [shard.path for shard in group])
            with self._changed:
                del self._active[level]
            shards.publish(con, temporary, final)
        except BaseException:
            with self._changed:
                self._active.pop(level, None)
                stopping = self._stopping
            con.close()
            shards.discard(temporary)
            if stopping:
                return False
            raise
        for shard in group:
            shard.path.unlink(missing_ok=True)
        return True
