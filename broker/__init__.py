"""pybroker.broker layer."""
