"""The host's ZeroMQ I/O thread: frames in -> the core's inbox; replies out; heartbeats; dead-client purge.

Runs in the thread ``modelhost-io``, the only thread that touches the ROUTER socket. It decodes
each request, answers ``ping``, ``ps`` and ``health`` itself from the core's published snapshots,
and posts the rest to the core (``host.core``). The core and the workers hand replies to ``send`` (any thread): it encodes in the caller's thread, queues the frames and wakes
the I/O thread through a socketpair. Every incoming frame counts as a heartbeat from its client;
a client with work in the host that stays silent for ``client_liveness_s`` is dropped and its jobs
are cancelled (at once, on the next tick, for a client on this machine whose process is seen gone). Bad input of any kind gets an error reply; nothing a client sends stops this loop.

Socket files: the default folder is created 0700, the socket file is created 0600 (umask), a
stale file left by a killed host is removed, and a live host at the same path is never replaced.
TCP: a port in use is refused before anything slow starts; with ``config.curve`` the socket is a
CURVE server (the context runs the ZAP authenticator, ``client.protocol.security.HostContext``); an IPv6
host sets zmq.IPV6.

Shared memory (``client.protocol.shm``, ipc:// hosts only): a client that sends ``attach`` and whose
process this host may read (same user) gets the host's pid and segment key; from then on its large
arrays arrive in its own segments (mapped here, released back to it when the job drops them) and,
once it says it can read the host's (``recv``), results and chunks leave in the host's pool. A
peer whose process is gone (checked every tick) is detached: what it was lent is free again. The
host replies to a version-1 peer in version 1 (frames only).
"""

from __future__ import annotations

import errno
import hmac
import logging
import os
import socket
import stat
import threading
import time
from collections import deque
from typing import Any, Callable

import zmq

from modelhost.client.protocol import shm, wire
from modelhost.client.protocol.address import Address, runtime_dir
from modelhost.client.protocol.errors import BadRequestError, RequestError, UnauthorizedError
from modelhost.host.security import HostContext
from modelhost.host.config import HostConfig
from modelhost.host.front import Front
from modelhost.host.waker import Waker

log = logging.getLogger("modelhost.server")
_SHM_EXIT_WAIT_S = 3.0


class BindError(RuntimeError):
    """The host cannot listen at its address; the message says why and what to change."""


class AddressInUseError(BindError):
    """Another live host (or, for TCP, another program) already listens at this address."""


class _Attached:
    """A peer that attached shared memory: its process, its segments as mapped here, whether it reads ours."""

    __slots__ = ("pid", "key", "mappings", "sender")

    def __init__(self, pid: int, key: str, mappings: shm.Mappings, sender: shm.Sender | None) -> None:
        self.pid, self.key, self.mappings, self.sender = pid, key, mappings, sender


class Encoded:
    """A reply's frames, and the shared-memory segments its arrays were placed in (given back if never sent)."""

    __slots__ = ("frames", "sender", "placed")

    def __init__(self, frames: list[Any], sender: shm.Sender | None, placed: list[int]) -> None:
        self.frames, self.sender, self.placed = frames, sender, placed


class Server:
    """The ROUTER socket and the thread that owns it (the host's ``Outbox``)."""

    def __init__(self, config: HostConfig) -> None:
        self.config = config
        self.core: Front | None = None
        self.clients = 0  # clients heard from within the liveness window, as of the last tick
        self._next_tick = 0.0
        self._limits = config.limits
        self._outbox: deque[list[Any]] = deque()
        self._waker = Waker()
        self._io_thread_id = 0  # the I/O thread's own replies need no wake-up: it flushes at the end of its turn
        self._stop = threading.Event()
        self._ctx = HostContext()  # a zmq.Context that also runs (and stops) the CURVE authenticator
        self._sock = self._ctx.socket(zmq.ROUTER)
        self._last_seen: dict[bytes, float] = {}
        self._v1_peers: set[bytes] = set()  # peers that wrote protocol version 1: answered in version 1
        self._attached: dict[bytes, _Attached] = {}  # written by the I/O thread, read by any thread in send
        self._closed_peers: dict[bytes, int] = {}  # closed clients whose live arrays still hold our segments -> pid
        use_shm = config.shm and config.address.path is not None and shm.available()
        self.pool = shm.Pool(max_bytes=config.shm_pool_bytes, min_bytes=config.shm_min_bytes,
                             on_forget=self._forget) if use_shm else None
        self.forget_holder: Callable[[Any, list[int]], None] | None = None  # runner processes (set by the daemon)
        self.thread = threading.Thread(target=self._run, name="modelhost-io", daemon=True)

    # ---- set-up and shutdown (main thread) ----

    def bind(self) -> None:
        addr = self.config.address
        self._sock.setsockopt(zmq.LINGER, 1000)
        # libzmq drops a frame over MAXMSGSIZE and disconnects the peer without a reply; up to this hard
        # cap (a memory guard) the frame reaches wire.decode, which answers too_large with the request id.
        self._sock.setsockopt(zmq.MAXMSGSIZE, 2 * self._limits.max_message_bytes)
        self._sock.setsockopt(zmq.RCVHWM, 10000)
        self._sock.setsockopt(zmq.SNDHWM, 10000)
        if addr.is_ipv6:
            self._sock.setsockopt(zmq.IPV6, 1)
        if self.config.curve is not None:
            self._ctx.serve_curve(self._sock, self.config.curve)
        if addr.path is not None:
            _prepare_socket_dir(addr.path)
        ensure_address_free(addr)
        old_umask = os.umask(0o177)  # an ipc socket file is born 0600: no window where others can connect
        try:
            self._sock.bind(addr.url)
        except zmq.ZMQError as exc:
            if exc.errno == errno.EADDRINUSE:
                raise AddressInUseError(f"{addr.url} is already in use; stop what listens there or choose another --address") from None
            raise BindError(f"cannot listen at {addr.url}: {exc.strerror}") from None
        finally:
            os.umask(old_umask)
        if addr.path is not None:
            os.chmod(addr.path, self.config.socket_mode)

    def start(self, core: Front) -> None:
        self.core = core
        self.thread.start()

    def stop(self, timeout_s: float = 5.0) -> None:
        """Send what is queued, close the socket, remove the socket file. Safe to call twice.

        Results that left in shared memory are readable only while this process lives: first wait
        (at most ``_SHM_EXIT_WAIT_S``) until each peer has mapped or released what it was lent."""
        if self.pool is not None and self.thread.is_alive() and not self._stop.is_set():
            deadline = time.monotonic() + _SHM_EXIT_WAIT_S
            while self.pool.unconfirmed() and time.monotonic() < deadline:
                time.sleep(0.005)
        if not self._stop.is_set():
            self._stop.set()
            self._waker.wake()
            if self.thread.is_alive():
                self.thread.join(timeout=timeout_s)
        path = self.config.address.path
        if path is not None:
            try:
                os.unlink(path)
            except FileNotFoundError:
                pass
        if self.pool is not None and not self.thread.is_alive():
            self.pool.close()

    # ---- replies (any thread): the host's Outbox ----

    def send(self, peer: bytes, kind: str, request_id: int, body: dict) -> None:
        """Queue one reply. A body that cannot be encoded becomes an error reply, so the client still gets one."""
        encoded = self.encode(peer, kind, request_id, body)
        if encoded is not None:
            self.send_encoded(peer, encoded)

    def encode(self, peer: bytes, kind: str, request_id: int, body: dict) -> Encoded | None:
        """One reply's frames, its large arrays placed for ``peer`` (its shared memory, or frames), ready for
        ``send_encoded``; None for a progress or chunk that cannot be encoded (a final reply always can: an
        error reply stands in)."""
        version = 1 if peer in self._v1_peers else wire.PROTOCOL_VERSION
        attached = self._attached.get(peer)
        sender = attached.sender if attached is not None else None
        placed: list[int] = []
        try:
            frames = wire.encode(kind, request_id, body, limits=self._limits, version=version, shm=sender, placed=placed)
        except RequestError as exc:
            if kind not in wire.FINAL_REPLY_KINDS:
                return None
            frames = wire.encode("error", request_id, {"code": "internal", "message": f"the host could not encode its reply: {exc.message}"},
                                 version=version)
            return Encoded(frames, None, [])
        return Encoded(frames, sender, placed)

    def send_encoded(self, peer: bytes, encoded: Encoded) -> None:
        self._outbox.append([peer, *encoded.frames])
        if threading.get_ident() != self._io_thread_id:
            self._waker.wake()

    def drop(self, encoded: Encoded | None) -> None:
        """A reply encoded but never sent (its job ended otherwise): its shared-memory segments are free again."""
        if encoded is not None and encoded.placed and encoded.sender is not None:
            encoded.sender.unplace(encoded.placed)

    def _forget(self, peer: Any, seg_ids: list[int]) -> None:
        """The pool retired segments ``peer`` may have mapped (any thread): a client, or a runner process that wrote
        into them (``forget_holder``)."""
        if isinstance(peer, tuple):
            if self.forget_holder is not None:
                self.forget_holder(peer, seg_ids)
            return
        self.send(peer, "shm", 0, {"forget": seg_ids})

    def reads_shm(self, peer: bytes) -> bool:
        """Whether ``peer`` maps the host's segments (its results can stay in shared memory); any thread."""
        attached = self._attached.get(peer)
        return attached is not None and attached.sender is not None

    # ---- the I/O thread ----

    def _run(self) -> None:
        self._io_thread_id = threading.get_ident()
        poller = zmq.Poller()
        poller.register(self._sock, zmq.POLLIN)
        poller.register(self._waker.fileno(), zmq.POLLIN)
        tick_ms = self.config.heartbeat_s * 1000 / 2
        try:
            while not self._stop.is_set():
                ready = dict(poller.poll(timeout=0 if self._outbox else tick_ms))  # a late reply of its own: at once
                if self._waker.fileno() in ready:
                    self._waker.clear()
                if self._sock in ready:
                    self._receive()
                self._tick()
                self._flush()  # last: what this turn's requests and tick queued goes out now
            self._flush()
        except Exception:
            log.critical("the I/O thread failed; the host cannot serve", exc_info=True)
        finally:
            self._sock.close(linger=1000)
            self._ctx.term()
            self._waker.close()

    def _flush(self) -> None:
        while self._outbox:
            frames = self._outbox.popleft()
            try:
                self._sock.send_multipart(frames, flags=zmq.NOBLOCK, copy=False)
            except zmq.Again:
                pass  # the peer's queue is full or it is gone: ROUTER drops, as the peer would never read it

    def _receive(self) -> None:
        for _ in range(1000):  # bounded, so replies and ticks are never starved by a flood
            try:
                frames = self._sock.recv_multipart(flags=zmq.NOBLOCK, copy=False)
            except zmq.Again:
                return
            received_ns = time.monotonic_ns()
            peer = frames[0].bytes
            self._last_seen[peer] = time.monotonic()
            self._handle(peer, frames[1:], received_ns)

    def _handle(self, peer: bytes, frames: list[Any], received_ns: int) -> None:
        request_id = 0
        attached = self._attached.get(peer)
        try:
            msg = wire.decode(frames, limits=self._limits, shm=attached.mappings if attached is not None else None)
            request_id = msg.id
            if msg.version == 1:
                self._v1_peers.add(peer)
            elif self._v1_peers:
                self._v1_peers.discard(peer)
            self._authorize(msg)
            if msg.kind == "ping":
                self.send(peer, "pong", msg.id, {})
                return
            if msg.kind == "shm":
                self._on_shm(peer, attached, msg.body)
                return
            if msg.kind not in wire.REQUEST_KINDS:
                raise BadRequestError(f"a {msg.kind!r} message is a reply, not a request")
            if msg.kind == "attach":
                body = self._attach(peer, msg.body)
            elif msg.kind == "health":
                body = self.core.health()
                if self.pool is not None:
                    body = {**body, "shm": self._shm_stats()}
            elif msg.kind == "ps":
                body = {"models": self.core.ps(), "devices": self.core.devices()}
            else:
                self.core.post(peer, msg, received_ns)
                body = None
        except RequestError as exc:
            rid = exc.request_id if exc.request_id is not None else request_id
            self.send(peer, "error", rid, wire.error_body(exc))
        except Exception as exc:  # a host bug: the client still gets its one reply, the host keeps serving
            log.error("request %d from a client failed inside the host", request_id, exc_info=True)
            self.send(peer, "error", request_id, wire.error_body(exc))
        else:
            if body is not None:
                self.send(peer, "result", msg.id, body)

    def _attach(self, peer: bytes, body: dict[str, Any]) -> dict[str, Any]:
        """A client offers shared memory: accept it when this host may map its process's segments."""
        pid, key = body["pid"], body["key"]
        if self.pool is None:
            why = "shared memory is off ([host] shm = false)" if not self.config.shm else "shared memory needs an ipc:// host on Linux"
            return {"accept": False, "reason": why}
        if not (0 < pid < 2**31 and len(key) <= 64 and shm.can_read(pid)):
            return {"accept": False, "reason": f"this host cannot map the memory of process {pid} (another user?)"}
        for other, state in list(self._attached.items()):  # the same client, reconnected under a new routing id
            if other != peer and state.pid == pid and state.key == key:
                self._detach(other)
        state = self._attached.get(peer)
        if state is None or state.pid != pid or state.key != key:
            if state is not None:
                self._detach(peer)
            state = _Attached(pid, key, shm.Mappings(pid, key, self._releaser(peer)), None)
        if body.get("recv"):
            state.sender = self.pool.sender(peer)
        self._attached[peer] = state
        return {"accept": True, "pid": os.getpid(), "key": self.pool.key, "min_bytes": self.pool.min_bytes}

    def _shm_stats(self) -> dict[str, int]:
        """Shared memory as ``health`` shows it: the host's segments, how many are lent, to how many peers."""
        pool = self.pool
        return {"segments": pool.segments(), "bytes": pool.bytes, "lent": pool.lent(), "peers": len(self._attached),
                "handed_over": pool.handed_over,
                "mapped_from_peers": sum(len(state.mappings) for state in self._attached.values())}

    def _releaser(self, peer: bytes):
        """What a mapped array of ``peer``'s calls when the host drops it (any thread): give the segment back."""
        def release(seg_id: int) -> None:
            self.send(peer, "shm", 0, {"release": [seg_id]})
        return release

    def _on_shm(self, peer: bytes, attached: _Attached | None, body: dict[str, Any]) -> None:
        """A notification, never answered, except that one from a client that never attached is an error."""
        if attached is None:
            raise BadRequestError("a 'shm' notification from a client that has not attached shared memory; send 'attach' first")
        if self.pool is not None and body.get("release"):
            self.pool.release(body["release"], peer)
        if self.pool is not None and body.get("mapped"):
            self.pool.mapped(body["mapped"], peer)
        if body.get("forget"):
            attached.mappings.forget(body["forget"])
        if "detach" in body:  # the client closed; its process may live on with arrays in these segments
            self._detach(peer, frozenset(body["detach"]))

    def _detach(self, peer: bytes, still_held: frozenset[int] = frozenset()) -> None:
        state = self._attached.pop(peer, None)
        if state is not None:
            state.mappings.clear()  # arrays still in use keep their mappings until dropped
            if self.pool is not None:
                self.pool.peer_gone(peer, still_held)
            if still_held:  # freed for good when that process exits (checked every tick)
                self._closed_peers[peer] = state.pid

    def _authorize(self, msg: wire.Message) -> None:
        token = self.config.token
        if token is not None and not hmac.compare_digest((msg.token or "").encode(), token.encode()):
            raise UnauthorizedError("this host needs a token: set MODELHOST_TOKEN (or pass token=) to the host's token")

    def _tick(self) -> None:
        """Every half heartbeat (not on every wake-up): clients with work that went silent are reported gone."""
        now = time.monotonic()
        if now < self._next_tick:
            return
        self._next_tick = now + self.config.heartbeat_s / 2
        dead = [p for p, state in self._attached.items() if not shm.alive(state.pid)]
        for peer in dead:
            self._detach(peer)  # its process is gone (kill -9 included): what it was lent is ours again
        for peer in [p for p, pid in self._closed_peers.items() if not shm.alive(pid)]:
            del self._closed_peers[peer]
            self.pool.peer_gone(peer)
        busy = self.core.busy_peers
        for peer in dead:
            if peer in busy:  # a client on this machine whose process ended: its work stops now, not after the window
                self._last_seen.pop(peer, None)
                self.core.peer_gone(peer)
        limit = self.config.client_liveness_s
        for peer in busy:
            if now - self._last_seen.get(peer, now) > limit:
                self._last_seen.pop(peer, None)
                self.core.peer_gone(peer)
        if len(self._last_seen) > len(busy) + 1024:  # forget idle clients, keep the table small
            self._last_seen = {peer: seen for peer, seen in self._last_seen.items() if peer in busy or now - seen < limit}
            self._v1_peers &= self._last_seen.keys()
        self.clients = sum(1 for seen in self._last_seen.values() if now - seen <= limit)  # read by the metrics thread


def _prepare_socket_dir(path: str) -> None:
    folder = os.path.dirname(path)
    try:
        os.makedirs(folder, mode=0o700, exist_ok=True)
        if folder == runtime_dir():
            os.chmod(folder, 0o700)  # ours alone, even if it existed with a looser mode
    except OSError as exc:
        raise BindError(f"cannot create the socket folder {folder}: {exc.strerror}; choose another --address") from None


def ensure_address_free(addr: Address) -> None:
    """Refuse if a host answers at ``addr``; remove a stale socket file nobody listens on (ipc only).

    Called before anything slow (catalog, weights) so a second host fails at once. For TCP: refuse
    if the port is taken (by a host or anything else) or the address is not one of this machine's.
    """
    if addr.is_tcp:
        _ensure_port_free(addr)
        return
    path = addr.path
    if path is None or not os.path.exists(path):
        return
    if not stat.S_ISSOCK(os.stat(path).st_mode):
        raise AddressInUseError(f"{path} exists and is not a socket; choose another --address")
    probe = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    probe.settimeout(1.0)
    try:
        probe.connect(path)
    except OSError as exc:
        if exc.errno not in (errno.ECONNREFUSED, errno.ENOENT, errno.ENOTSOCK):
            raise
        os.unlink(path)
        log.info("removed a stale socket file %s", path)
        return
    finally:
        probe.close()
    raise AddressInUseError(f"another modelhost host is already serving at ipc://{path}; stop it first (or use --address)")


def _ensure_port_free(addr: Address) -> None:
    host = None if addr.host == "*" else addr.host  # tcp://*:PORT: every interface
    try:
        family, _, _, _, sockaddr = socket.getaddrinfo(host, addr.port, type=socket.SOCK_STREAM, flags=socket.AI_PASSIVE)[0]
    except socket.gaierror as exc:
        raise BindError(f"cannot listen at {addr.url}: {exc.strerror}") from None
    probe = socket.socket(family, socket.SOCK_STREAM)
    probe.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)  # as ZeroMQ binds: a port in TIME_WAIT is free
    try:
        probe.bind(sockaddr)
    except OSError as exc:
        if exc.errno == errno.EADDRINUSE:
            raise AddressInUseError(f"tcp port {addr.port} at {addr.url} is already in use (another modelhost host or "
                                    "another program); stop it first or choose another --address") from None
        raise BindError(f"cannot listen at {addr.url}: {exc.strerror}") from None
    finally:
        probe.close()
