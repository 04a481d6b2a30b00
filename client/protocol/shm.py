"""Shared-memory segments for large arrays between a host and a client on one machine, one user.

The wire (``client.protocol.wire``) decides which array goes where and writes the references; this module
only owns the memory: a writer's ``Pool`` of reused segments and a reader's ``Mappings`` of one
peer's segments. Nothing here knows the message layout.

A segment is a memfd (``memfd_create``): it has no name in any file system, so nothing can be left
behind in /dev/shm; the kernel frees it when the last descriptor and mapping of it are gone, which
a kill -9 of either side also does. The peer maps it by opening ``/proc/<writer pid>/fd/<fd>``,
which the kernel allows only to processes of the same user (ptrace read access); the name each
memfd carries (``modelhost-<key>-<segment id>``, the key a random token the writer gave its peer
when it attached) is checked on the opened descriptor, so a peer maps only segments its writer
meant for it.

Ownership, explicitly:

* the **writer** owns its segments. ``Pool.place`` copies an array into a free segment and lends
  that segment to one peer; it is not written again until that peer releases it (or is gone).
* a segment must be opened while its writer is alive: the reader maps it as it decodes the message
  and acknowledges its first mapping of each segment (``on_mapped``); a writer about to exit waits
  (bounded) until every segment it lent has been mapped or released (``Pool.unconfirmed``).
* the **reader** maps a segment once and caches the mapping; each array it decodes is a writable
  numpy view (``Lease``) into it, zero-copy. When the last view of an array is garbage, the
  reader's ``on_release`` callback runs (in whatever thread dropped it) and the reader tells the
  writer, which puts the segment back in its pool. A caller who wants a copy takes one (``.copy()``).
* a writer that retires a segment (to make room for another size) tells the reader to forget it;
  a reader that sees its peer gone drops its cache (live views keep their memory until dropped).

Segments are pre-faulted (``MAP_POPULATE``) when created and reused, so a transfer costs one copy
into warm pages and no page faults on either side. Sizes are powers of two from ``MIN_SEGMENT``;
a pool never holds more than ``max_bytes``; when it cannot place an array it returns None and the
wire sends that array as a ZeroMQ frame, as before. Linux only (``available()``).

Threads: ``Pool`` is used by any thread (a lock guards it); ``Mappings`` by whichever thread holds
its connection's socket (the I/O thread, or a caller borrowing it: one at a time); ``Lease``
finalizers run in any thread and only call the ``on_release`` they were given.
"""

from __future__ import annotations

import mmap
import os
import threading
import weakref
from typing import Callable, Hashable

import numpy as np

MIN_SEGMENT = 1 << 20  # 1 MiB: the smallest segment (arrays that small rarely pay off anyway)
DEFAULT_MIN_BYTES = 256 * 1024  # arrays at least this large travel through shared memory (benchmarks/ipc.py)
DEFAULT_POOL_BYTES = 1 << 30  # the most a pool holds; beyond it, arrays go as frames


def available() -> bool:
    """Whether this machine can share memory this way (Linux with memfd_create and /proc)."""
    return hasattr(os, "memfd_create") and hasattr(mmap, "MAP_POPULATE") and os.path.isdir("/proc/self/fd")


def new_key() -> str:
    """A random token that names one writer's segments (sent to its peer when attaching)."""
    return os.urandom(8).hex()  # not the secrets module: it imports random, hashlib and hmac into every client


def segment_size(nbytes: int) -> int:
    """The size of the segment an array of ``nbytes`` takes: the next power of two, at least MIN_SEGMENT."""
    return max(MIN_SEGMENT, 1 << max(0, nbytes - 1).bit_length())


class ShmError(Exception):
    """A segment reference that cannot be mapped; the message says why."""


class _Segment:
    __slots__ = ("seg_id", "fd", "size", "mm", "view", "lent_to", "readers", "mapped_by")

    def __init__(self, seg_id: int, fd: int, size: int) -> None:
        self.seg_id, self.fd, self.size = seg_id, fd, size
        self.mm = mmap.mmap(fd, size, flags=mmap.MAP_SHARED | mmap.MAP_POPULATE)
        self.view = np.frombuffer(self.mm, dtype=np.uint8)
        self.lent_to: Hashable | None = None
        self.readers: set[Hashable] = set()  # peers that may hold a mapping of it (told to forget it on retire)
        self.mapped_by: set[Hashable] = set()  # peers that said they mapped it (they need no descriptor again)

    def close(self) -> None:
        self.view = None
        try:
            self.mm.close()
        except BufferError:  # an encode still holds a view; the mapping goes when that is garbage
            pass
        os.close(self.fd)


class Pool:
    """A writer's segments: ``place`` an array for a peer, ``release`` when the peer is done with it."""

    def __init__(self, key: str | None = None, *, max_bytes: int = DEFAULT_POOL_BYTES, min_bytes: int = DEFAULT_MIN_BYTES,
                 on_forget: Callable[[Hashable, list[int]], None] | None = None) -> None:
        self.key = key or new_key()
        self.min_bytes = min_bytes
        self.max_bytes = max_bytes
        self._on_forget = on_forget  # told which segments a peer must drop when they are retired
        self._segments: dict[int, _Segment] = {}
        self._held: dict[int, _Segment] = {}  # address -> a segment whose array this process holds (``held``)
        self._next_id = 1
        self._lock = threading.Lock()
        self._closed = False
        self.placed = 0  # arrays placed (read by tests and benchmarks)
        self.refused = 0  # arrays that did not fit and went as frames
        self.handed_over = 0  # arrays another process wrote into our segments, passed on to a peer without a copy

    @property
    def bytes(self) -> int:
        return sum(s.size for s in list(self._segments.values()))

    def segments(self) -> int:
        """How many segments the pool holds now."""
        return len(self._segments)

    def lent(self) -> int:
        """How many segments are lent out now."""
        with self._lock:
            return sum(1 for s in self._segments.values() if s.lent_to is not None)

    def place(self, arr: np.ndarray, peer: Hashable) -> tuple[int, int, int] | None:
        """Copy ``arr`` (in C order) into a free segment lent to ``peer``: (segment id, fd, size); None if it cannot.

        An array that already sits at the start of one of this pool's segments, held here (``held``: a
        runner process wrote it there), is handed to ``peer`` as it is: no copy."""
        nbytes = arr.nbytes
        if nbytes < self.min_bytes or nbytes == 0:
            return None
        if self._held:
            ref = self._hand_over(arr, peer)
            if ref is not None:
                return ref
        seg = self._take(nbytes, peer)
        if seg is None:
            return None
        # one copy in C order, whatever the array's strides (a strided array is not copied twice)
        np.copyto(seg.view[:nbytes].view(arr.dtype).reshape(arr.shape), arr, casting="no")
        return seg.seg_id, seg.fd, seg.size

    def alloc(self, nbytes: int, holder: Hashable) -> tuple[int, int, int] | None:
        """A free segment for ``nbytes``, lent to ``holder`` (a writer in another process, which maps and fills
        it): (segment id, fd, size); None if the pool cannot. ``holder`` is told to forget it when retired."""
        if nbytes < self.min_bytes or nbytes == 0:
            return None
        seg = self._take(nbytes, holder)
        return None if seg is None else (seg.seg_id, seg.fd, seg.size)

    def held(self, seg_id: int, holder: Hashable, dtype: np.dtype, shape: tuple[int, ...], nbytes: int) -> np.ndarray:
        """The array a ``holder`` wrote into segment ``seg_id`` (``alloc``), now held by this process: a view of it,
        with no copy. The segment goes back to the pool when the view is dropped, unless ``place`` handed it to
        a peer first. Raises ShmError if ``holder`` was not lent that segment or the array does not fit."""
        with self._lock:
            seg = self._segments.get(seg_id)
            if seg is None or seg.lent_to != holder:
                raise ShmError(f"segment {seg_id} is not lent to {holder!r}")
            if nbytes > seg.size:
                raise ShmError(f"an array of {nbytes} bytes does not fit in segment {seg_id} of {seg.size} bytes")
            token = ("held", seg_id)
            seg.lent_to = token
            self._held[seg.view.__array_interface__["data"][0]] = seg
        owner = _Held(seg.view, dtype, shape)
        arr = np.asarray(owner)
        weakref.finalize(owner, self.release, [seg_id], token)
        return arr

    def _hand_over(self, arr: np.ndarray, peer: Hashable) -> tuple[int, int, int] | None:
        with self._lock:
            seg = self._held.get(arr.__array_interface__["data"][0])
            if seg is None or not arr.flags.c_contiguous or seg.lent_to != ("held", seg.seg_id):
                return None
            del self._held[seg.view.__array_interface__["data"][0]]
            seg.lent_to = peer
            seg.readers.add(peer)
            self.handed_over += 1
            return seg.seg_id, seg.fd, seg.size

    def _take(self, nbytes: int, peer: Hashable) -> _Segment | None:
        size = segment_size(nbytes)
        forget: list[tuple[Hashable, list[int]]] = []
        with self._lock:
            if self._closed:
                return None
            seg = self._free(size)
            if seg is None:
                seg = self._create(size, forget)
            if seg is None:
                self.refused += 1
                return None
            seg.lent_to = peer
            seg.readers.add(peer)
            self.placed += 1
        for who, ids in forget:
            self._tell_forget(who, ids)
        return seg

    def sender(self, peer: Hashable) -> "Sender":
        """What ``wire.encode`` places arrays through for one peer."""
        return Sender(self, peer)

    def release(self, seg_ids: list[int], peer: Hashable) -> None:
        """``peer`` is done with these segments (ids it was not lent are ignored: it cannot free another's)."""
        with self._lock:
            for seg_id in seg_ids:
                seg = self._segments.get(seg_id)
                if seg is not None and seg.lent_to == peer:
                    seg.lent_to = None
                    if isinstance(peer, tuple):
                        self._held.pop(seg.view.__array_interface__["data"][0], None)

    def mapped(self, seg_ids: list[int], peer: Hashable) -> None:
        """``peer`` mapped these segments: it can read them even after this process is gone."""
        with self._lock:
            for seg_id in seg_ids:
                seg = self._segments.get(seg_id)
                if seg is not None and peer in seg.readers:
                    seg.mapped_by.add(peer)

    def unconfirmed(self) -> int:
        """Segments lent to a peer that has not mapped them yet (it needs this process alive to do so); a
        segment a writer in another process holds, or this process holds, needs nobody."""
        with self._lock:
            return sum(1 for s in self._segments.values()
                       if s.lent_to is not None and not isinstance(s.lent_to, tuple) and s.lent_to not in s.mapped_by)

    def peer_gone(self, peer: Hashable, still_held: frozenset[int] = frozenset()) -> None:
        """Everything lent to ``peer`` is free again (but ``still_held``: a closed peer's arrays still read
        those, until its process exits); it will not be told to forget anything."""
        with self._lock:
            for seg in self._segments.values():
                if seg.seg_id in still_held and seg.lent_to == peer:
                    continue
                seg.readers.discard(peer)
                seg.mapped_by.discard(peer)
                if seg.lent_to == peer:
                    seg.lent_to = None

    def close(self) -> None:
        with self._lock:
            self._closed = True
            segments, self._segments = list(self._segments.values()), {}
        for seg in segments:
            seg.close()

    # ---- under the lock ----

    def _free(self, size: int) -> _Segment | None:
        best = None
        for seg in self._segments.values():
            if seg.lent_to is None and seg.size >= size and (best is None or seg.size < best.size):
                best = seg
        if best is not None and best.size > 4 * size:
            return None  # far too big: better a right-sized one if the budget allows (else _create falls back to it)
        return best

    def _create(self, size: int, forget: list[tuple[Hashable, list[int]]]) -> _Segment | None:
        total = self.bytes
        if total + size > self.max_bytes:
            # retire free segments, smallest first, until the new one fits; tell their readers to forget them
            free = sorted((s for s in self._segments.values() if s.lent_to is None), key=lambda s: s.size)
            need = total + size - self.max_bytes
            if sum(s.size for s in free) < need:
                return self._oversized(size)
            by_peer: dict[Hashable, list[int]] = {}
            for seg in free:
                if need <= 0:
                    break
                need -= seg.size
                del self._segments[seg.seg_id]
                for reader in seg.readers:
                    by_peer.setdefault(reader, []).append(seg.seg_id)
                seg.close()
            forget.extend(by_peer.items())
        seg_id = self._next_id
        self._next_id += 1
        try:
            fd = os.memfd_create(f"modelhost-{self.key}-{seg_id}", os.MFD_CLOEXEC)
        except OSError:
            return None
        try:
            os.ftruncate(fd, size)
            seg = _Segment(seg_id, fd, size)
        except (OSError, ValueError):  # out of memory for shmem, or a limit: frames will do
            os.close(fd)
            return None
        self._segments[seg_id] = seg
        return seg

    def _oversized(self, size: int) -> _Segment | None:
        for seg in sorted(self._segments.values(), key=lambda s: s.size):
            if seg.lent_to is None and seg.size >= size:
                return seg
        return None

    def _tell_forget(self, peer: Hashable, ids: list[int]) -> None:
        if self._on_forget is not None:
            self._on_forget(peer, ids)


class Sender:
    """A pool seen from one peer's messages: ``wire.ShmSender``."""

    __slots__ = ("pool", "peer", "min_bytes")

    def __init__(self, pool: Pool, peer: Hashable) -> None:
        self.pool, self.peer, self.min_bytes = pool, peer, pool.min_bytes

    def place(self, arr: np.ndarray) -> tuple[int, int, int] | None:
        return self.pool.place(arr, self.peer)

    def unplace(self, seg_ids: list[int]) -> None:
        self.pool.release(seg_ids, self.peer)


class _Held:
    """The owner of an array this process holds in one of its own segments (``Pool.held``): the numpy base."""

    __slots__ = ("__array_interface__", "_view", "__weakref__")

    def __init__(self, view: np.ndarray, dtype: np.dtype, shape: tuple[int, ...]) -> None:
        self._view = view  # keeps the segment's buffer exported while the array lives
        self.__array_interface__ = {"version": 3, "shape": shape, "typestr": dtype.str,
                                    "data": (view.__array_interface__["data"][0], False)}


class Lease:
    """The owner of one decoded array's memory in a peer's segment; the numpy array's ``base``.

    numpy keeps the object that provides ``__array_interface__`` as every derived view's base, so
    this object lives exactly as long as some view of the array does; its finalizer releases the
    segment to the writer.
    """

    __slots__ = ("__array_interface__", "_mapping", "__weakref__")

    def __init__(self, mapping: "_Mapping", dtype: np.dtype, shape: tuple[int, ...]) -> None:
        self._mapping = mapping
        self.__array_interface__ = {"version": 3, "shape": shape, "typestr": dtype.str, "data": (mapping.address, False)}


class _Mapping:
    __slots__ = ("seg_id", "size", "mm", "anchor", "address")

    def __init__(self, seg_id: int, fd: int, size: int) -> None:
        self.seg_id, self.size = seg_id, size
        self.mm = mmap.mmap(fd, size, flags=mmap.MAP_SHARED | mmap.MAP_POPULATE)
        self.anchor = np.frombuffer(self.mm, dtype=np.uint8)  # keeps the buffer exported while views live
        self.address = self.anchor.__array_interface__["data"][0]


class Mappings:
    """A reader's mappings of one peer's segments (``pid`` and ``key`` from its attach)."""

    def __init__(self, pid: int, key: str, on_release: Callable[[int], None],
                 on_mapped: Callable[[int], None] | None = None) -> None:
        self.pid, self.key = pid, key
        self._on_release = on_release
        self._on_mapped = on_mapped
        self._maps: dict[int, _Mapping] = {}
        self._held: dict[int, int] = {}  # segment id -> live arrays in it (any thread drops them: under the lock)
        self._lock = threading.Lock()

    def array(self, seg_id: int, fd: int, size: int, dtype: np.dtype, shape: tuple[int, ...], nbytes: int) -> np.ndarray:
        """A writable view of the array in segment ``seg_id``; raises ``ShmError`` if it cannot be mapped."""
        mapping = self._maps.get(seg_id)
        if mapping is None:
            mapping = self._open(seg_id, fd, size)
            if self._on_mapped is not None:
                self._on_mapped(seg_id)
        elif mapping.size != size:
            raise ShmError(f"segment {seg_id} was {mapping.size} bytes and is now said to be {size}")
        if nbytes > size:
            raise ShmError(f"an array of {nbytes} bytes does not fit in segment {seg_id} of {size} bytes")
        arr = np.asarray(Lease(mapping, dtype, shape))
        with self._lock:
            self._held[seg_id] = self._held.get(seg_id, 0) + 1
        weakref.finalize(arr.base, self._dropped, seg_id)
        return arr

    def held(self) -> list[int]:
        """The segments some live array still reads."""
        with self._lock:
            return list(self._held)

    def _dropped(self, seg_id: int) -> None:
        with self._lock:
            left = self._held.get(seg_id, 1) - 1
            if left > 0:
                self._held[seg_id] = left
            else:
                self._held.pop(seg_id, None)
        self._on_release(seg_id)

    def unread(self, seg_id: int) -> None:
        """A message referencing ``seg_id`` was refused before its array was read: the writer gets it back."""
        self._on_release(seg_id)

    def forget(self, seg_ids: list[int]) -> None:
        """The writer retired these segments: drop their mappings (live views keep theirs until dropped)."""
        for seg_id in seg_ids:
            self._maps.pop(seg_id, None)

    def clear(self) -> None:
        self._maps.clear()

    def __len__(self) -> int:
        return len(self._maps)

    def _open(self, seg_id: int, fd: int, size: int) -> _Mapping:
        try:
            own = os.open(f"/proc/{self.pid}/fd/{fd}", os.O_RDWR | os.O_CLOEXEC)
        except OSError as exc:
            raise ShmError(f"cannot open segment {seg_id} of process {self.pid}: {exc.strerror}") from None
        try:
            name = os.readlink(f"/proc/self/fd/{own}")
            expected = f"/memfd:modelhost-{self.key}-{seg_id}"
            if name != expected and name != expected + " (deleted)":
                raise ShmError(f"descriptor {fd} of process {self.pid} is not segment {seg_id} of its peer")
            if os.fstat(own).st_size != size:
                raise ShmError(f"segment {seg_id} is {os.fstat(own).st_size} bytes, not {size}")
            mapping = _Mapping(seg_id, own, size)
        except OSError as exc:
            raise ShmError(f"cannot map segment {seg_id} of process {self.pid}: {exc.strerror}") from None
        finally:
            os.close(own)  # the mapping keeps the segment
        self._maps[seg_id] = mapping
        return mapping


def can_read(pid: int) -> bool:
    """Whether this process may open ``pid``'s descriptors (same user, not hidden): shared memory works with it."""
    try:
        return os.stat(f"/proc/{pid}").st_uid == os.getuid() and bool(os.listdir(f"/proc/{pid}/fd"))
    except OSError:
        return False


def alive(pid: int) -> bool:
    """Whether process ``pid`` still exists."""
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True
