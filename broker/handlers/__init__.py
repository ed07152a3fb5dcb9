"""pybroker.broker.handlers layer."""
