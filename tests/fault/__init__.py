"""Fault suite: the daemon against venue failures, crashes, bad input, operator mistakes and disk faults.

Shared helpers live in :mod:`tests.fault.harness`; the venue and process scenarios (which
``bench/faults.py`` runs longer) in :mod:`tests.fault.scenarios`.
"""
