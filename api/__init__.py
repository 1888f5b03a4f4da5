"""HTTP adapter: a thin Flask app (`api.app.create_app`) over the write side and the read models.

The package itself imports nothing, so the processes that only need the API's tables (the worker, the
operators' commands: `idempotency_keys`) start without loading Flask.
"""
