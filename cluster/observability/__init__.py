"""Observability: metrics, the monitor, status, app logs, breakers, the watchdog."""
