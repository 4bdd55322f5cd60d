"""Locustfile: the retail mix (with echo and outage users) under the soak shape (shapes.SoakShape).

Run from the repository root, e.g.:
    locust -f loadtests/soak.py --headless --host 127.0.0.1:8583 --shape-users 50 --shape-duration 120
"""

from possim_load import EchoUser, OutageUser, RetailUser  # noqa: F401  (Locust collects them)
from shapes import SoakShape  # noqa: F401
