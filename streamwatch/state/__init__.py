"""Durable state: the checkpointer (numbered steps, restore) and its SQLite store."""
