"""Closed forms for coupled vs independent generation: couplings, joint laws, win/tie rates, variances."""
