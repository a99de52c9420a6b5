"""Background work: scores, channel aggregation, trust, log pruning, the full-sync blob."""
