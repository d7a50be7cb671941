"""Simulation home: virtual time, scenarios and ``hedgerd simulate``'s simulated day.

``clock.py`` is virtual time, ``scenario.py`` the day's scenario, ``venues.py`` the scenario
venues, ``ledger.py`` the ledger on virtual time, ``day.py`` runs the day
(:func:`~hedgerd.sim.day.run_simulation`) and ``cli.py`` prints and plots it. Nothing is
imported here, so production code can use a module of this package without loading the engine.
"""
