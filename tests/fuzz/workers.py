"""Sending batches: in-process for one worker, forked processes for several.

A worker owns a connection pool and turns batch indexes into bytes on the wire; it knows
nothing about health. The coordinator (runner.py) hands every worker the same batch index
and checks the broker once all of them are done, so checks still happen "after every
batch" with several workers.
"""

from __future__ import annotations

import multiprocessing
import multiprocessing.connection
from typing import Any

from tests.fuzz.cases import Unit, generate_batch
from tests.fuzz.mutate import Mutator
from tests.fuzz.pool import Pool

__all__ = ["Sender", "InProcessWorkers", "ForkedWorkers", "send_units"]

_PUMP_EVERY = 64


def send_units(pool: Pool, units: list[Unit], flush_timeout: float = 5.0) -> int:
    """Write ``units`` through ``pool``; returns how many cases could not be sent."""
    for i, u in enumerate(units):
        try:
            if u.split:
                pool.submit(u.conn, u.data[: u.split], u.cases, unit=i)
                pool.pump(0.05)
                pool.submit(u.conn, u.data[u.split :], 0, u.last)
            else:
                pool.submit(u.conn, u.data, u.cases, u.last, unit=i)
        except ConnectionRefusedError:
            return sum(x.cases for x in units[i:])
        if i % _PUMP_EVERY == _PUMP_EVERY - 1:
            pool.pump(0.0)
    pool.pump(flush_timeout)
    return 0


class Sender:
    """One worker's state: its mutator view of the templates and its connection pool."""

    def __init__(
        self, mutator: Mutator, port: int, seed: int, worker: int, conns: int, per_batch: int
    ) -> None:
        self.mutator = mutator
        self.port = port
        self.seed = seed
        self.worker = worker
        self.conns = conns
        self.per_batch = per_batch
        self.pool: Pool | None = None

    def run_batch(self, batch: int) -> dict[str, Any]:
        """Send one batch; per-batch counters, plus ``ports``: local port -> unit indexes."""
        if self.pool is None:
            self.pool = Pool("127.0.0.1", self.port, self.conns)
        units = generate_batch(
            self.mutator, self.seed, self.worker, batch, self.per_batch, self.conns
        )
        self.pool.port_units = {}
        unsent = send_units(self.pool, units)
        stats: dict[str, Any] = self.pool.stats.as_dict()
        stats["unsent"] = unsent
        stats["cases"] = self.per_batch - unsent
        stats["ports"] = self.pool.port_units
        self.pool.stats.__init__()  # type: ignore[misc]  # per-batch deltas
        return stats

    def reset(self) -> None:
        if self.pool is not None:
            self.pool.close()
            self.pool = None


class InProcessWorkers:
    def __init__(self, sender: Sender) -> None:
        self.sender = sender

    def run_batch(self, batch: int) -> list[dict[str, Any]]:
        return [self.sender.run_batch(batch)]

    def reset(self) -> None:
        self.sender.reset()

    def close(self) -> None:
        self.sender.reset()


def _worker_main(sender: Sender, conn: multiprocessing.connection.Connection) -> None:
    while True:
        msg: tuple[str, Any] = conn.recv()
        if msg[0] == "batch":
            conn.send(sender.run_batch(msg[1]))
        elif msg[0] == "reset":
            sender.reset()
            conn.send(None)
        else:
            sender.reset()
            return


class ForkedWorkers:
    """K forked processes (templates are shared by fork, not pickled)."""

    def __init__(self, senders: list[Sender]) -> None:
        ctx = multiprocessing.get_context("fork")
        self.pipes = []
        self.procs = []
        for sender in senders:
            parent, child = ctx.Pipe()
            proc = ctx.Process(target=_worker_main, args=(sender, child), daemon=True)
            proc.start()
            self.pipes.append(parent)
            self.procs.append(proc)

    def _all(self, msg: tuple[str, Any]) -> list[Any]:
        for p in self.pipes:
            p.send(msg)
        return [p.recv() for p in self.pipes]

    def run_batch(self, batch: int) -> list[dict[str, Any]]:
        return self._all(("batch", batch))

    def reset(self) -> None:
        self._all(("reset", None))

    def close(self) -> None:
        for p in self.pipes:
            try:
                p.send(("stop", None))
            except OSError:
                pass
        for proc in self.procs:
            proc.join(10)
            if proc.is_alive():
                proc.kill()
