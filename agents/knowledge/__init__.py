"""Approved knowledge: collections of documents retrieved into the context of every turn."""

from agents.knowledge.base import JobKnowledge, KnowledgeBase, Retrieval
from agents.knowledge.config import CollectionConfig, KnowledgeConfig

__all__ = ["CollectionConfig", "JobKnowledge", "KnowledgeBase", "KnowledgeConfig", "Retrieval"]
