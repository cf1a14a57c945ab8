"""coupled.simulate (stub)."""
