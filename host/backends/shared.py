"""Weights that several models use at once (RVC's HuBERT and RMVPE), loaded once and refcounted.

Any worker thread may acquire and release; the loader runs under the registry's lock for that key
only, so two voices that need the same HuBERT wait for one load instead of making two copies.
"""

from __future__ import annotations

import threading
from dataclasses import dataclass
from typing import Any, Callable, Hashable


@dataclass
class _Entry:
    value: Any
    refs: int
    bytes: int


class SharedWeights:
    """A refcounted map of loaded weights, keyed by (kind, path, device, dtype)."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._key_locks: dict[Hashable, threading.Lock] = {}
        self._entries: dict[Hashable, _Entry] = {}

    def acquire(self, key: Hashable, load: Callable[[], tuple[Any, int]]) -> Any:
        """The value for ``key``, loading it with ``load() -> (value, bytes)`` if nobody holds it."""
        with self._lock:
            key_lock = self._key_locks.setdefault(key, threading.Lock())
        with key_lock:
            with self._lock:
                entry = self._entries.get(key)
                if entry is not None:
                    entry.refs += 1
                    return entry.value
            value, nbytes = load()
            with self._lock:
                self._entries[key] = _Entry(value, 1, nbytes)
            return value

    def release(self, key: Hashable) -> None:
        """Drop one reference; the value is freed with the last one."""
        with self._lock:
            entry = self._entries.get(key)
            if entry is None:
                return
            entry.refs -= 1
            if entry.refs <= 0:
                del self._entries[key]

    def holders(self, key: Hashable) -> int:
        with self._lock:
            entry = self._entries.get(key)
            return entry.refs if entry else 0

    def bytes(self, key: Hashable) -> int:
        with self._lock:
            entry = self._entries.get(key)
            return entry.bytes if entry else 0


SHARED = SharedWeights()
