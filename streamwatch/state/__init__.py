"""Durable state: the checkpoint store (SQLite)."""
