"""Logging, metrics, the health endpoint and systemd notifications."""
