"""The log cleaner's driver: plans and commits on the event loop, cleans in its own thread.

``storage.cleaner.LogCleaner`` does the work; this module only schedules it the way
Kafka's cleaner thread does: clean the dirtiest log, and when there is nothing to clean
sleep ``log.cleaner.backoff.ms``. The cleaning itself (reading segments, building the
offset map, writing ``.cleaned``/``.swap`` files) runs in a dedicated single-thread
executor so it never blocks the loop and never competes with flushes for the default
pool; each cleaned segment is swapped in by a short step on the loop
(``Log.replace_segments``), so appends and reads never see a half-swapped log.
"""

from __future__ import annotations

import asyncio
import logging
import math
from concurrent.futures import ThreadPoolExecutor

from pybroker.broker.clock import now_ms
from pybroker.config.broker_config import BrokerConfig
from pybroker.storage.cleaner import CleanerStopped, CleaningAborted, LogCleaner
from pybroker.storage.log_manager import LogManager

log = logging.getLogger(__name__)


class CleanerService:
    def __init__(self, config: BrokerConfig, log_manager: LogManager) -> None:
        values = config.values
        self.enabled = config.log_cleaner_enable and config.log_cleaner_threads > 0
        self.log_manager = log_manager
        rate = float(values.get("log.cleaner.io.max.bytes.per.second", math.inf))
        self.cleaner = LogCleaner(
            dedupe_buffer_size=config.log_cleaner_dedupe_buffer_size,
            io_buffer_load_factor=float(values.get("log.cleaner.io.buffer.load.factor", 0.9)),
            io_max_bytes_per_second=rate if rate < 1e300 else math.inf,
            producer_id_expiration_ms=config.producer_id_expiration_ms,
            now_ms=now_ms,
        )
        self.backoff_s = max(config.log_cleaner_backoff_ms, 10) / 1000
        self._pool: ThreadPoolExecutor | None = None
        self._task: asyncio.Task[None] | None = None

    def start(self) -> None:
        """Read the cleaner checkpoints and start cleaning (after the logs are loaded)."""
        if not self.enabled:
            log.info("The log cleaner is disabled (log.cleaner.enable=false)")
            return
        self.cleaner.load_checkpoints(self.log_manager.log_dirs)
        self._pool = ThreadPoolExecutor(max_workers=1, thread_name_prefix="log-cleaner")
        self._task = asyncio.get_running_loop().create_task(self._run(), name="log-cleaner")

    async def _run(self) -> None:
        while True:
            try:
                cleaned = await self.clean_once()
            except asyncio.CancelledError:
                raise
            except Exception:
                log.exception("The log cleaner failed; backing off")
                cleaned = False
            if not cleaned:
                await asyncio.sleep(self.backoff_s)

    async def clean_once(self) -> bool:
        """Clean the dirtiest log that is due, if any; True when one was cleaned."""
        cleaner = self.cleaner
        task = cleaner.plan(self.log_manager.all_logs(), now_ms())
        if task is None:
            return False
        loop = asyncio.get_running_loop()
        pool = self._pool
        try:
            if not await loop.run_in_executor(pool, cleaner.prepare, task):
                return False
            for i in range(len(task.groups)):
                group = await loop.run_in_executor(pool, cleaner.build_group, task, i)
                if not cleaner.commit_group(task, group):  # on the loop: the swap
                    return True
            await loop.run_in_executor(pool, cleaner.finish, task)
        except CleaningAborted as e:
            log.info("Cleaning of %s abandoned: %s", task.log.dir.name, e)
            return False
        except CleanerStopped:
            return False
        except OSError as e:
            # Kafka's LogCleaner: an I/O error takes the log's dir offline (KIP-112); a log
            # being deleted or moved (detached from the failure channel) is no news.
            if getattr(task.log, "failures", None) is not None:
                self.log_manager.failures.report(
                    task.log.dir.parent, f"Error while cleaning {task.log.dir.name}", e
                )
            return False
        return True

    async def stop(self) -> None:
        """Abandon the cleaning in progress and wait for the thread (before logs close)."""
        self.cleaner.request_stop()
        if self._task is not None:
            self._task.cancel()
            self._task = None
        if self._pool is not None:
            pool, self._pool = self._pool, None
            await asyncio.get_running_loop().run_in_executor(None, pool.shutdown, True)
