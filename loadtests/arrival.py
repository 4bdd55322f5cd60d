"""Locustfile: the open model, a constant arrival rate (shapes.ArrivalRateShape, possim_load.ArrivalUser).

Run from the repository root, e.g.:
    locust -f loadtests/arrival.py --headless --host 127.0.0.1:8583 --arrival-rate 500 --shape-users 8 --shape-duration 60
"""

from possim_load import ArrivalUser  # noqa: F401  (Locust collects it)
from shapes import ArrivalRateShape  # noqa: F401
