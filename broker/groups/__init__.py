"""The classic consumer-group coordinator and its records in ``__consumer_offsets``."""
