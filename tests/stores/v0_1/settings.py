"""What 0.1.0's stores import from ``envroute.settings`` (unchanged since)."""

from envroute.settings import frozen_map

__all__ = ["frozen_map"]
