"""Exceptions raised by the store; each message says what to do next."""

from __future__ import annotations


class StoreError(Exception):
    """The store cannot be used as asked."""


class StoreMissing(StoreError):
    """The database file does not exist yet."""


class NoCheckpoint(StoreError):
    """The store exists but no checkpoint has been written to it yet."""


class StoreCorrupt(StoreError):
    """The file is not a readable store (corrupt, foreign or from a newer version)."""


class StoreLocked(StoreError):
    """Another live process writes this store; a store has one writer at a time."""


class StoreListError(StoreError):
    """RECO_DB / --db names several stores in a way that cannot be read; the message says how."""
