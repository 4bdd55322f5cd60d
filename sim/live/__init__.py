"""The live driver: asyncio TCP around the sans-IO host core, on the wall clock.

Modules, each named for what it holds:

* :mod:`.host_server` -- ``possim host``: the TCP server that runs :class:`sim.core.host.Host`;
* :mod:`.exchange` -- one frame through the core: (partial) decode, answer, encode;
* :mod:`.redact` -- what the replay log may keep of a request (no track or PIN data);
* :mod:`.store` -- the SQLite replay log of the state directory, and replay at start;
* :mod:`.journal` -- the JSON-lines message journal (PANs masked) and the session pcap;
* :mod:`.rules` -- the scripted-misbehaviour overlay (TOML, reloaded at runtime);
* :mod:`.admin` -- the local JSON-lines admin endpoint shared by host and proxy;
* :mod:`.toxics`, :mod:`.proxy` -- ``possim proxy``: a Toxiproxy-style chaos TCP proxy;
* :mod:`.client` -- an asyncio ISO 8583 client (several requests in flight, QMUX matching);
* :mod:`.traffic` -- realistic request mixes for the Locust load kit;
* :mod:`.sales` -- chip sales with valid ARQCs and a load card set, for tests and ``possim bench host``;
* :mod:`.process` -- start and stop server processes by PID, through a ready file;
* :mod:`.bench_host` -- ``possim bench host``: the host against a bare echo server;
* :mod:`.loop` -- uvloop when available;
* :mod:`.cli` -- the typer commands (``possim host``, ``possim proxy``, ``possim admin``);
* :mod:`.terminal` -- the live virtual terminal process (ECR interface, SQLite store-and-forward).

The core never sees a socket, a thread, a sleep or the clock: every call into it
comes from here with the ``now`` this driver read.
"""
