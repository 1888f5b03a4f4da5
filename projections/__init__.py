"""Read side: one module per read model, each holding its tables, event handlers, queries and records.

`projections.engine` keeps them up to date (batches, generations, rebuilds, parking); nothing in a
read model's module knows how it is run.
"""
