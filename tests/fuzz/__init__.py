"""A structure-aware fuzzer for the broker: valid kio requests, mutated, against a real process.

Run it with ``python -m tests.fuzz --cases N --seed S``; see runner.py for what it checks
and __main__.py for the options. The modules, bottom up: schema/values (plausible request
values from kio's classes), walk (where lengths, counts and tags sit in the bytes),
batches (record batches: valid, broken, bombs), templates, mutate, cases (seeded batches
of write units), pool (connections), health and steady (the checks), workers, runner,
isolate (shrink a finding to one write).
"""
