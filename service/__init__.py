"""The composition root: settings, wiring, and the processes (`membership serve`, `worker`, operator tools).

Only entry points import this package; the other packages receive what they need from it.
"""
