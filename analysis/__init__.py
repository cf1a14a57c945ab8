"""coupled.analysis (stub)."""
