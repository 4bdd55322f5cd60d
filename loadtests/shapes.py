"""Load shapes for the ISO 8583 users: step, spike (Black Friday), soak, constant arrival rate.

Each shape scales to two options, so one command line moves between a 10-second
smoke run and an hour-long test: ``--shape-users`` (peak users = connections) and
``--shape-duration`` (seconds). Every shape ends by itself (``tick`` returns None).
The stage tables are plain data: (fraction of the duration, fraction of the peak users).
"""

from __future__ import annotations

import math
from typing import Sequence

from locust import LoadTestShape


class _StagedShape(LoadTestShape):
    """Users follow a table of (end as a fraction of the duration, fraction of peak users)."""

    abstract = True
    stages: Sequence[tuple[float, float]] = ()
    spawn_per_s_fraction = 1.0  # of peak users per second when the level changes

    def _options(self) -> tuple[int, float]:
        opts = self.runner.environment.parsed_options if self.runner else None
        users = int(getattr(opts, "shape_users", 20) or 20)
        duration = float(getattr(opts, "shape_duration", 60.0) or 60.0)
        return max(1, users), max(1.0, duration)

    def tick(self) -> tuple[int, float] | None:
        users, duration = self._options()
        t = self.get_run_time()
        if t >= duration:
            return None
        for end, level in self.stages:
            if t < end * duration:
                return max(1, math.ceil(level * users)), max(1.0, users * self.spawn_per_s_fraction)
        return None


class StepShape(_StagedShape):
    """Five equal steps up to the peak: where does latency bend?"""

    stages = ((0.2, 0.2), (0.4, 0.4), (0.6, 0.6), (0.8, 0.8), (1.0, 1.0))


class SpikeShape(_StagedShape):
    """Black Friday: a quiet baseline, a sudden spike to the peak, back to baseline."""

    stages = ((0.4, 0.2), (0.6, 1.0), (1.0, 0.2))
    spawn_per_s_fraction = 5.0  # the spike arrives within a fifth of a second


class SoakShape(_StagedShape):
    """A ramp over the first tenth, then the peak held: leaks and drift show over time."""

    stages = ((0.1, 0.5), (1.0, 1.0))


class ArrivalRateShape(_StagedShape):
    """Open model: ``--shape-users`` connections all along, ``--arrival-rate`` requests/s in total.

    The users (``ArrivalUser``) send on a fixed schedule; the shape only holds the
    connections open for the duration.
    """

    stages = ((1.0, 1.0),)
    spawn_per_s_fraction = 10.0


SHAPES = {"step": StepShape, "spike": SpikeShape, "soak": SoakShape, "arrival": ArrivalRateShape}
