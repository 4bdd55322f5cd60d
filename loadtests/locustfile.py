"""Locustfile without a shape: the retail mix with echo and outage users, sized by -u/-r/-t.

Run from the repository root, e.g.:
    locust -f loadtests/locustfile.py --headless --host 127.0.0.1:8583 -u 20 -r 20 -t 30s
"""

from possim_load import EchoUser, OutageUser, RetailUser  # noqa: F401  (Locust collects them)
