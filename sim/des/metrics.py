"""Streaming figures: counters, an HDR latency histogram, and a per-interval timeline.

Nothing here keeps a record per transaction: counters are integers, latency goes into
an HDR histogram (fixed memory, 3 significant digits), and the timeline has one small
bucket per reporting interval (so it grows with simulated time, not with traffic).
"""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass, field
from typing import Any

from hdrh.histogram import HdrHistogram

__all__ = ["Bucket", "Metrics"]


@dataclass(slots=True)
class Bucket:
    """One reporting interval: outcomes by ARC and the estate's store backlog at its end."""

    start_s: float
    outcomes: Counter = field(default_factory=Counter)
    backlog: int = 0

    def to_dict(self) -> dict[str, Any]:
        """Plain values for the JSON report (keys sorted for byte-identical output)."""
        return {"start_s": round(self.start_s, 3), "outcomes": dict(sorted(self.outcomes.items())),
                "backlog": self.backlog}


class Metrics:
    """Everything the report counts, updated as the run goes."""

    def __init__(self, interval_s: float) -> None:
        self.interval_s = interval_s
        self.started = 0
        self.transactions = 0
        self.outcomes: Counter = Counter()
        self.latency = HdrHistogram(1, 3_600_000, 3)
        self.offline_approved = 0
        self.offline_forwarded = 0
        self.advice_repeats = 0
        self.reversals_owed = 0
        self.reversals_sent = 0
        self.reversals_acknowledged = 0
        self.reversal_repeats = 0
        self.fallbacks = 0
        self.stand_in = 0
        self.link_failovers = 0
        """Switches to a less preferred link because the one in use went down (3G to Wi-Fi)."""
        self.link_failbacks = 0
        """Switches back to a preferred link once it was up again."""
        self.receipts: Counter = Counter()
        """Transactions by receipt status: ``printed``, ``not printed: out of paper`` (DEV-02), ..."""
        self.power_losses = 0
        self.timeouts = 0
        self.unreachable = 0
        self.late_answers = 0
        self.settlements: Counter = Counter()
        self.timeline: list[Bucket] = [Bucket(0.0)]

    def bucket(self, now_s: float) -> Bucket:
        """The bucket for simulated second ``now_s`` (opening the ones in between)."""
        index = int(now_s // self.interval_s)
        while len(self.timeline) <= index:
            self.timeline.append(Bucket(len(self.timeline) * self.interval_s))
        return self.timeline[index]

    def outcome(self, now_s: float, key: str) -> None:
        """One finished transaction; ``key`` is its ARC, ``terminated`` or ``power-lost``."""
        self.transactions += 1
        self.outcomes[key] += 1
        self.bucket(now_s).outcomes[key] += 1

    def round_trip(self, seconds: float) -> None:
        """An online request answered in ``seconds`` (terminal send to answer)."""
        self.latency.record_value(max(1, int(round(seconds * 1000))))

    def latency_ms(self) -> dict[str, int]:
        """p50, p90, p99 and max of the online round trips, in ms (0 when none)."""
        h = self.latency
        if h.get_total_count() == 0:
            return {"p50": 0, "p90": 0, "p99": 0, "max": 0, "count": 0}
        return {"p50": h.get_value_at_percentile(50), "p90": h.get_value_at_percentile(90),
                "p99": h.get_value_at_percentile(99), "max": h.get_max_value(), "count": h.get_total_count()}

    def latency_cdf(self) -> list[tuple[int, float]]:
        """(ms, cumulative share) points for the CDF plot."""
        total = self.latency.get_total_count()
        points, seen = [], 0
        for item in self.latency.get_recorded_iterator():
            seen += item.count_added_in_this_iter_step
            points.append((item.value_iterated_to, seen / total))
        return points
