"""Glia's performance benchmark (`make bench`): the real processes next to bare baselines."""
