"""``possim load``: the Locust load kit of ``loadtests/`` run headless, as subprocesses.

* :mod:`.run` -- the Locust command line of a shape, the run, its CSV and DE39 counts;
* :mod:`.cli` -- the typer command and its summary tables.
"""
