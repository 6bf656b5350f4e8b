"""Where assistant text comes from: an OpenAI-compatible endpoint or the local responder."""

from glia_chat_api.llm.base import ChatChunk, ChatError, ChatModel, ChatTurnMessage
from glia_chat_api.llm.local import LocalResponder
from glia_chat_api.llm.openai_chat import OpenAIChat

__all__ = ["ChatChunk", "ChatError", "ChatModel", "ChatTurnMessage", "LocalResponder", "OpenAIChat"]
