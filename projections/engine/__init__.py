"""How read models are kept: applying events in batches, generations and blue/green rebuilds,
parking what cannot be applied, and the one read transaction every query runs in."""
