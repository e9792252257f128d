"""`make bench`: Sluice's throughput against this machine's limits and against what a user would otherwise run."""
