"""glia: a terminal client for Glia."""
