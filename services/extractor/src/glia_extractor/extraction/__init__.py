"""Turning messages into cards: the LLM path, the rule-based fallback, the source hash."""
