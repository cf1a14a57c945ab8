"""coupled.paper_figures (stub)."""
