"""The live virtual terminal: the kernel as a long-running process with a durable store.

Modules, each named for what it holds:

* :mod:`.store` -- the SQLite store: attempts, in-flight markers, owed advices and
  reversals, history, STAN and batch counters;
* :mod:`.outcome` -- what a finished transaction means for the store (state, key,
  history events): pure functions of the kernel's result;
* :mod:`.link` -- the host connection, reopened with backoff (on :mod:`sim.live.client`);
* :mod:`.engine` -- :class:`~.engine.Terminal`: the kernel driven on the wall clock,
  forwarding with backoff, keep-alive echo, void, settlement;
* :mod:`.upload` -- the batch upload after a 0510 95 (0320s, then a 0500 960000);
* :mod:`.ecr` -- the cash-register interface (JSON lines over local TCP);
* :mod:`.client` -- a blocking ECR client;
* :mod:`.service` -- the process: state directory, signals, ready file;
* :mod:`.cli` -- ``possim terminal --serve`` and ``possim ecr``.
"""
