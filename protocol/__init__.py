"""pybroker.protocol layer."""
