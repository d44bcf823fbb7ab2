"""The exceptions streamwatch raises, in one hierarchy."""

from __future__ import annotations


class StreamwatchError(Exception):
    """Base of every error streamwatch raises on purpose."""


class ConfigError(StreamwatchError):
    """The settings are invalid; the message names the variable and why."""


class SourceError(StreamwatchError):
    """A source cannot be read (missing file, unreachable broker)."""


class StateError(StreamwatchError):
    """A state file cannot be used: unreadable, another format, other settings."""


class ChangelogError(StreamwatchError):
    """A partition's state could not be written to the changelog topic."""


class EncodeError(StreamwatchError):
    """A notification could not be encoded for the outbox (a value that is not plain data)."""
