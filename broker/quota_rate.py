"""Kafka's windowed Rate (metrics.stats.Rate over SampledStat) and the throttle time it implies.

Kept apart from the quota manager so the arithmetic can be checked on its own: samples of
``window_ms`` (quota.window.size.seconds), ``samples`` of them (quota.window.num) plus one
overlapping placeholder; the rate divides the samples' sum by the elapsed time since the
oldest sample, never less than ``min_windows`` full windows. A violation's throttle time is
QuotaUtils.throttleTime: (rate - quota) / quota * window size.

Kafka counts at least samples-1 windows (10 s by default) as elapsed, so a client that has
just started may send ten seconds' worth of its quota at once, and again when that sample
expires 11 s later: over 20 s a 1 MB/s producer gets about 1.35 MB/s through Kafka 4.1.
The client quota manager passes ``min_windows=1``: a fresh client's rate is measured over
the time it has really been sending (one window at least), so the quota holds from the
first second. Clients only see the throttle times they already handle.
"""

from __future__ import annotations


class _Sample:
    __slots__ = ("start_ms", "last_event_ms", "value", "events")

    def __init__(self, now_ms: int) -> None:
        self.reset(now_ms)

    def reset(self, now_ms: int) -> None:
        self.start_ms = now_ms
        self.last_event_ms = now_ms
        self.value = 0.0
        self.events = 0


class Rate:
    def __init__(self, samples: int = 11, window_ms: int = 1000, min_windows: int = -1) -> None:
        self.num_samples = samples
        self.window_ms = window_ms
        self.min_windows = samples - 1 if min_windows < 0 else min_windows  # -1: Kafka's
        self._samples: list[_Sample] = []
        self._current = 0

    def _current_sample(self, now_ms: int) -> _Sample:
        if not self._samples:
            self._samples.append(_Sample(now_ms))
        return self._samples[self._current]

    def record(self, value: float, now_ms: int) -> None:
        sample = self._current_sample(now_ms)
        if now_ms - sample.start_ms >= self.window_ms:
            self._current = (self._current + 1) % (self.num_samples + 1)
            if self._current >= len(self._samples):
                sample = _Sample(now_ms)
                self._samples.append(sample)
            else:
                sample = self._samples[self._current]
                sample.reset(now_ms)
        sample.value += value
        sample.events += 1
        sample.last_event_ms = now_ms

    def _purge(self, now_ms: int) -> None:
        expire = self.num_samples * self.window_ms
        for sample in self._samples:
            if now_ms - sample.last_event_ms >= expire:
                sample.reset(now_ms)

    def window_size(self, now_ms: int) -> int:
        self._purge(now_ms)
        if not self._samples:
            self._samples.append(_Sample(now_ms))
        elapsed = now_ms - min(s.start_ms for s in self._samples)
        full = elapsed // self.window_ms
        if full < self.min_windows:
            elapsed += (self.min_windows - full) * self.window_ms
        return max(elapsed, 1)

    def measure(self, now_ms: int) -> float:
        """Per second."""
        self._purge(now_ms)
        total = sum(s.value for s in self._samples)
        return total / (self.window_size(now_ms) / 1000.0)

    def record_and_throttle(self, value: float, bound: float, now_ms: int) -> int:
        """Record, then Sensor.record's quota check: the throttle time in ms, 0 within quota."""
        self.record(value, now_ms)
        rate = self.measure(now_ms)
        if rate <= bound:
            return 0
        return round((rate - bound) / bound * self.window_size(now_ms))


class TokenBucket:
    """KIP-599's TokenBucket (controller_mutation_rate): credits refill at the quota per
    second up to quota x samples x window; a mutation takes its partitions' worth, the
    balance may go negative, and a negative balance is the violation. Throttle time is
    the time to earn the debt back: -tokens / quota seconds."""

    def __init__(self, samples: int = 11, window_ms: int = 1000) -> None:
        self.burst_s = samples * window_ms / 1000.0
        self.tokens: float | None = None  # full on first use
        self.last_ms = 0

    def measure(self, quota: float, now_ms: int) -> float:
        burst = quota * self.burst_s
        if self.tokens is None:
            self.tokens = burst
        else:
            self.tokens = min(burst, self.tokens + quota * max(0, now_ms - self.last_ms) / 1000)
        self.last_ms = now_ms
        return self.tokens

    def record(self, value: float, quota: float, now_ms: int) -> None:
        self.measure(quota, now_ms)
        assert self.tokens is not None
        self.tokens -= value

    @staticmethod
    def throttle_ms(tokens: float, quota: float) -> int:
        return round(-tokens / quota * 1000) if tokens < 0 else 0
