"""Benchmarks: figures and their ratios to a baseline measured in the same run; nothing asserts on time.

Run each from the repository root (each module's docstring and --help list its options):

    .venv/bin/python -m benchmarks.write         invite latency at 10 / 10,000 / 100,000 members
    .venv/bin/python -m benchmarks.projections   read+decode, library runner, live catch-up, rebuild and
                                                 command-to-visible latency on 1,000,000 events
    .venv/bin/python -m benchmarks.bulk          bulk role change items/s at 1,000 / 10,000 members,
                                                 against one command per member
    .venv/bin/python -m benchmarks.slow_clients  request latency on `membership serve` (SQLite) while
                                                 slow connections trickle their headers
    .venv/bin/python -m benchmarks.http          commands and reads over HTTP against a plain CRUD app
                                                 (`crud_app`) on the same gunicorn and PostgreSQL, driven
                                                 by the same load generator (`loadgen`: wrk), interleaved

`harness` holds what they share: a throwaway PostgreSQL (`scripts/pg`, durability on), the service's
settings, seeding organizations through the domain, guards against hangs, the header saying what was
measured, percentiles and rates, and the way a benchmark exits (SIGTERM and Ctrl-C stop the server).
`projections_seed` and `projections_stages` are the parts of `benchmarks.projections`.
"""
