"""The SimPy driver: an estate of terminals, their links and the host, over simulated hours.

Every transaction is decided by the real kernel (:mod:`sim.emv.kernel`) talking to a
real virtual card (:mod:`sim.emv.card`) and the real host (:class:`sim.core.host.Host`);
this package only supplies *time* (arrivals, latency, service, timeouts), *faults*
(outages, loss bursts, power cuts) and *bookkeeping* (durable stores, metrics, the
history the checker reads). Modules:

* :mod:`.scenario` -- TOML scenarios validated with pydantic;
* :mod:`.population` -- the cardholders: card-set labels cloned into many accounts;
* :mod:`.link` -- per-terminal latency, Gilbert-Elliott loss, outages;
* :mod:`.faults` -- the fault schedule as a SimPy process;
* :mod:`.store` -- the terminal's durable store-and-forward queue;
* :mod:`.terminal` -- one long-lived process per terminal;
* :mod:`.world` -- the host, the population of cardholders, the run;
* :mod:`.metrics`, :mod:`.report`, :mod:`.plots` -- streaming figures and their output;
* :mod:`.replications`, :mod:`.bench`, :mod:`.cli` -- many seeds, throughput, commands.
"""
