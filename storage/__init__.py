"""pybroker.storage layer."""
