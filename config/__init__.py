"""pybroker.config layer."""
