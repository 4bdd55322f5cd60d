"""PC/SC driver: the virtual card behind a real PC/SC stack, and real readers.

Two halves meet at pcscd:

* :mod:`sim.pcsc.vpcd` puts a card (the virtual card, or anything with
  ``power_on``/``execute``) into vsmartcard's *Virtual PCD* reader: a sans-IO
  protocol core (:class:`~sim.pcsc.vpcd.VpcdBridge`) and a small socket driver
  (:func:`~sim.pcsc.vpcd.serve_card`);
* :mod:`sim.pcsc.transport` is the terminal side: a pyscard transport with the same
  ``power_on``/``execute`` shape as the virtual card, so the kernel drives a card in a
  PC/SC reader (virtual or physical) exactly as it drives the in-process one.

:mod:`sim.pcsc.pcscd` starts a private pcscd in its own mount and network namespaces,
so tests and demos never touch the host's pcscd or its vpcd port.

Nothing here is imported eagerly: importing :mod:`sim.pcsc` does not need pyscard
or a running pcscd.
"""
