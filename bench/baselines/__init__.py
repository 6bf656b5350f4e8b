"""Bare implementations of the same work, to put Glia's figures in proportion."""
