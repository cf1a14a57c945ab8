"""coupled.runner (stub)."""
