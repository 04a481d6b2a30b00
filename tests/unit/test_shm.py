"""Shared-memory segments in one process (a real memfd opened back through /proc): views, releases, reuse,
bounds, and the wire's ext 3 round trip and refusals."""

from __future__ import annotations

import gc
import os

import msgpack
import numpy as np
import pytest

from modelhost.client.protocol import shm, wire
from modelhost.client.protocol.errors import BadRequestError, VersionMismatchError

pytestmark = pytest.mark.skipif(not shm.available(), reason="memfd_create and /proc are Linux-only")


class Peer:
    """A writer's pool and a reader's mappings of it, wired the way a connection wires them."""

    def __init__(self, **pool_args) -> None:
        self.released: list[int] = []
        self.mapped: list[int] = []
        self.forgotten: list[tuple[object, list[int]]] = []
        self.pool = shm.Pool(on_forget=lambda peer, ids: self.forgotten.append((peer, ids)), **pool_args)
        self.maps = shm.Mappings(os.getpid(), self.pool.key, self._release, self.mapped.append)

    def _release(self, seg_id: int) -> None:
        self.released.append(seg_id)
        self.pool.release([seg_id], "reader")

    def send(self, arr: np.ndarray) -> np.ndarray:
        ref = self.pool.place(np.ascontiguousarray(arr), "reader")
        assert ref is not None
        seg_id, fd, size = ref
        return self.maps.array(seg_id, fd, size, arr.dtype, arr.shape, arr.nbytes)


def _audio(seconds: float = 2.0, channels: int = 2) -> np.ndarray:
    return np.random.default_rng(1).uniform(-1, 1, (channels, int(32000 * seconds))).astype(np.float32)


def test_a_view_reads_the_writers_bytes_is_writable_and_releases_only_when_every_view_is_gone() -> None:
    peer = Peer()
    audio = _audio()
    got = peer.send(audio)
    assert np.array_equal(got, audio) and got.flags.writeable and got.dtype == audio.dtype
    part = got[1, 100:200]  # a view of the view: the segment must stay lent while it lives
    del got
    gc.collect()
    assert peer.released == [] and peer.pool.lent() == 1
    assert np.array_equal(part, audio[1, 100:200])
    del part
    assert len(peer.released) == 1 and peer.pool.lent() == 0
    assert peer.mapped == peer.released  # mapped once, acknowledged once


def test_segments_are_reused_and_mapped_once_for_thousands_of_transfers() -> None:
    peer = Peer()
    audio = _audio(1.5)
    peer.send(audio)  # the first transfer creates the segment and its mapping
    fds_before = len(os.listdir("/proc/self/fd"))
    for i in range(1, 2000):
        got = peer.send(audio * (i % 3))
        assert got[0, 7] == audio[0, 7] * (i % 3)
        del got
    assert peer.pool.segments() == 1 and len(peer.maps) == 1 and len(peer.mapped) == 1
    assert peer.pool.lent() == 0 and len(peer.released) == 2000
    assert len(os.listdir("/proc/self/fd")) == fds_before  # nothing leaks a descriptor


def test_a_full_pool_refuses_so_the_array_goes_as_a_frame_and_free_segments_are_retired_for_new_sizes() -> None:
    peer = Peer(max_bytes=4 << 20, min_bytes=1024)
    small = np.ones(300_000, np.float32)  # 1.2 MB: a 2 MiB segment
    held = [peer.send(small), peer.send(small)]
    assert peer.pool.place(small, "reader") is None and peer.pool.refused == 1  # 4 MiB lent: no room
    del held
    big = np.ones(700_000, np.float32)  # 2.8 MB: a 4 MiB segment; the two free 2 MiB ones are retired for it
    got = peer.send(big)
    assert np.array_equal(got, big) and peer.pool.segments() == 1
    assert peer.forgotten and sorted(sum((ids for _, ids in peer.forgotten), [])) == [1, 2]


def test_a_segment_under_another_key_is_refused() -> None:
    peer = Peer()
    seg_id, fd, size = peer.pool.place(_audio(), "reader")
    stranger = shm.Mappings(os.getpid(), "0123456789abcdef", lambda seg: None)
    with pytest.raises(shm.ShmError, match="is not segment"):
        stranger.array(seg_id, fd, size, np.dtype("<f4"), (2, 64000), 2 * 64000 * 4)
    with pytest.raises(shm.ShmError, match="does not fit"):
        peer.maps.array(seg_id, fd, size, np.dtype("<f4"), (2, size), 8 * size)


def test_wire_round_trip_through_shared_memory_and_frames_for_small_arrays() -> None:
    peer = Peer()
    audio, small = _audio(), np.arange(10, dtype=np.int16)
    frames = wire.encode("result", 9, {"audio": audio, "small": small}, shm=peer.pool.sender("reader"))
    assert len(frames) == 1  # the large array is in shared memory, the small one inline
    msg = wire.decode(frames, shm=peer.maps)
    assert np.array_equal(msg.body["audio"], audio) and np.array_equal(msg.body["small"], small)
    assert peer.pool.lent() == 1
    del msg
    assert peer.pool.lent() == 0


def test_a_version_1_peer_never_gets_shared_memory_and_an_old_message_still_decodes() -> None:
    peer = Peer()
    frames = wire.encode("result", 3, {"audio": _audio()}, version=1, shm=peer.pool.sender("reader"))
    assert len(frames) == 2 and peer.pool.placed == 0  # an out-of-band frame, as version 1 sends it
    msg = wire.decode(frames)
    assert msg.version == 1 and msg.body["audio"].shape == (2, 64000)


def test_shared_memory_arrays_without_an_attach_or_in_version_1_are_refused_and_given_back() -> None:
    peer = Peer()
    frames = wire.encode("generate", 4, {"model": "m", "audio": _audio()}, shm=peer.pool.sender("reader"))
    with pytest.raises(BadRequestError, match="did not attach shared memory") as info:
        wire.decode(frames)
    assert info.value.request_id == 4
    header = msgpack.unpackb(frames[0], raw=False, ext_hook=lambda code, data: msgpack.ExtType(code, data))
    header["v"] = 1
    with pytest.raises(VersionMismatchError, match="needs protocol version 2"):
        wire.decode([msgpack.packb(header, use_bin_type=True)], shm=peer.maps)
    gc.collect()
    assert peer.pool.lent() == 0  # the refused message's segment went back to its writer


def test_a_message_refused_for_another_field_gives_its_segments_back_unread() -> None:
    peer = Peer()
    frames = wire.encode("generate", 5, {"model": "m", "audio": _audio()}, shm=peer.pool.sender("reader"))
    header = msgpack.unpackb(frames[0], raw=False, ext_hook=lambda code, data: msgpack.ExtType(code, data))
    # an unknown extension decoded before the shared array: the array is never mapped
    header["b"] = {"params": {"a": msgpack.ExtType(9, b"")}, "model": "m", "audio": header["b"]["audio"]}
    with pytest.raises(BadRequestError, match="unknown msgpack extension"):
        wire.decode([msgpack.packb(header, use_bin_type=True)], shm=peer.maps)
    assert peer.pool.lent() == 0 and peer.released  # the shared array was never mapped, yet given back


def test_an_array_another_process_wrote_into_our_segment_is_handed_on_without_a_copy() -> None:
    """A runner's path: ``alloc`` lends a segment to a writer, the writer fills it through its own mapping,
    ``held`` gives this process a view, and ``place`` lends that same memory to a reader: no copy anywhere."""
    pool = shm.Pool()
    writer = ("runner", "w")
    seg_id, fd, size = pool.alloc(4 << 20, writer)
    their = shm.Mappings(os.getpid(), pool.key, lambda seg: None).array(seg_id, fd, size, np.dtype(np.uint8), (size,), size)
    audio = _audio()
    their[: audio.nbytes].view(audio.dtype).reshape(audio.shape)[...] = audio  # the writer's one copy
    held = pool.held(seg_id, writer, audio.dtype, audio.shape, audio.nbytes)
    assert np.array_equal(held, audio) and pool.unconfirmed() == 0  # held here: nobody else needs this process
    ref = pool.place(held, "client")
    assert ref == (seg_id, fd, size) and pool.handed_over == 1 and pool.placed == 1  # the same segment: no copy
    del held
    gc.collect()
    assert pool.lent() == 1  # lent to the client now: dropping our view does not free it
    pool.release([seg_id], "client")
    assert pool.lent() == 0


def test_a_held_array_dropped_without_being_sent_gives_its_segment_back() -> None:
    pool = shm.Pool()
    writer = ("runner", "w")
    seg_id, _, _ = pool.alloc(1 << 20, writer)
    with pytest.raises(shm.ShmError):
        pool.held(seg_id, ("runner", "other"), np.dtype(np.float32), (10,), 40)  # not lent to that one
    held = pool.held(seg_id, writer, np.dtype(np.float32), (1000,), 4000)
    assert pool.lent() == 1
    del held
    gc.collect()
    assert pool.lent() == 0
    seg2, _, _ = pool.alloc(1 << 20, writer)
    pool.peer_gone(writer)  # the writer died before it sent what it was lent
    assert pool.lent() == 0 and seg2 == seg_id  # reused: the free segment of that size
