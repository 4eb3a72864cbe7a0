"""morag-worker: GPU ingestion workers and their coordinator for MoRAG-style RAG systems."""

__version__ = "0.2.0"
