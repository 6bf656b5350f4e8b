"""Test doubles that speak real protocols, so the services' real clients are exercised."""

from glia_fakes.llm import FakeLLM, FakeLLMControl, build_cards
from glia_fakes.tcp_proxy import FaultProxy

__all__ = ["FakeLLM", "FakeLLMControl", "FaultProxy", "build_cards"]
