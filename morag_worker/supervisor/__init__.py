"""The supervisor: main loop, child pool, routing, leases, transfers, watchdogs."""
