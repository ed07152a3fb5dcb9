"""Timers for the coordinators: a protocol they depend on, and the event-loop version.

The group and transaction coordinators take a Scheduler so unit tests can drive them with
a fake clock; the broker hands them LoopScheduler, whose timers run on its one loop.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from typing import Any, Protocol


class TimerHandle(Protocol):
    def cancel(self) -> None: ...


class Scheduler(Protocol):
    def call_later(self, delay: float, callback: Callable[..., Any], *args: Any) -> TimerHandle: ...


class LoopScheduler:
    """Timers on the running event loop (the broker's)."""

    def call_later(self, delay: float, callback: Callable[..., Any], *args: Any) -> Any:
        return asyncio.get_running_loop().call_later(delay, callback, *args)
