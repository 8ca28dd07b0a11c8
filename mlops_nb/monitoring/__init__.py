"""The monitoring phase: metrics, alerts, the failure catalogue, skew and drift, and `phase`, what the monitoring notebook runs."""
