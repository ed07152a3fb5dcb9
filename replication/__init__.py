"""pybroker.replication layer."""
