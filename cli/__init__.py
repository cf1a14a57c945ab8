"""The ``coupled`` command line (thin: parses, calls the parts)."""
