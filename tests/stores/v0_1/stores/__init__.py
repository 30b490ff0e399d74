"""0.1.0's stores (verbatim)."""
