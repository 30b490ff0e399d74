"""envroute 0.1.0's own store code, verbatim (``git show c88b39e:envroute/…``), so the
migration tests start from a store made exactly as 0.1.0 made it. Never edit these files:
they are a fixture, not code of this version."""
