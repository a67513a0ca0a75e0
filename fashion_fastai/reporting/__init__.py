"""The run's report: results.md, metrics.json, per-class tables and plots."""
