"""The chat-api -> extractor message contract."""

from glia_common.contracts.extraction import ExtractionRequested

__all__ = ["ExtractionRequested"]
