"""The parts of the fault campaign (``bench/chaos.py``): processes, a network-cutting
proxy, PostgreSQL and small disks, the trial, and the kinds of fault."""
