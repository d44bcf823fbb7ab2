"""What the daemon shows: metrics, health, logs, history, status, the report."""
