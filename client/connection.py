"""One DEALER connection to a host, owned by one I/O thread, shared by any number of caller threads.

Runs in the thread ``modelhost-client-io``. Callers never touch the socket: ``submit`` encodes in
the caller's thread, queues the frames and wakes the I/O thread through a socketpair. The I/O
thread sends, receives, routes each reply to the request's sink, sends heartbeats while requests
are outstanding, enforces each request's deadline, and declares the host dead when nothing has
been heard from it for ``liveness_s`` while requests are outstanding.

A socket monitor tells the I/O thread what the connection does: once a handshake succeeded, a
disconnect with requests outstanding means the host died under them (``HostDeadError`` at once, not
after the liveness window); a failed handshake (a wrong CURVE key, a client not on the host's
allow-list, CURVE on one side only) fails the requests with a ``HostUnreachableError`` that says
which, instead of leaving them to time out. TCP to a host off loopback needs CURVE
(``client.protocol.security``): the host's public key pinned with ``server_key`` or $MODELHOST_SERVER_KEY.

Shared memory (``client.protocol.shm``): on an ipc:// address, once connected, the I/O thread offers the host
shared memory (``attach``, before any request it sends after the handshake). If the host accepts,
large request arrays go into this connection's pool and large results arrive as views into the
host's segments, released back to the host when the caller drops them. A new connection to a new
host (a restart) starts a new pool; $MODELHOST_SHM=0 or ``shm=False`` keeps frames.

A caller alone on the connection skips the hop (``call``): when the I/O thread has nothing in
flight and nothing queued, it has parked the socket (it polls only its wake-up pipe and the monitor),
and the caller borrows the socket under ``_sock_lock``, sends, and waits for its reply on it in its
own thread: two thread wake-ups fewer per call. A borrow is short: the caller hands its request to
the I/O thread (``adopt``, before anything else queued) when another thread wants the connection
(submit, cancel, a released segment, close: they interrupt it through a second pipe), when the host
reports progress or a chunk, when half a heartbeat passes without the final reply, or when its
deadline is due; from then on it waits for its events as any request does, so heartbeats, the
liveness check and deadlines stay the I/O thread's. A disconnect seen while a request was borrowed
fails it as a dead host at adoption. While parked, the I/O thread reads what the host sends
unasked (shared-memory notes) every half heartbeat, when no caller holds the socket.
$MODELHOST_DIRECT_CALLS=0 (or ``Connection(direct_calls=False)``) sends every call through the I/O
thread.

A sink is a callable run on the I/O thread (or the borrowing caller's thread) with one event: ``("progress", step, total)``,
``("chunk", body)`` (a streaming generate's audio so far), ``("result", body)`` or ``("error", exception)``. Every submitted request gets exactly one final
event (result or error): from the host, from its deadline, from the liveness check, or from close.
"""

from __future__ import annotations

import itertools
import logging
import os
import socket
import struct
import threading
import time
from collections import deque
from typing import Any, Callable

import zmq

from modelhost.client.protocol import security, shm, wire
from modelhost.client.protocol.address import parse_address
from modelhost.client.protocol.errors import (
    DeadlineExceededError,
    HostDeadError,
    HostUnavailableError,
    HostUnreachableError,
    ModelhostError,
    ProtocolError,
    RequestError,
    error_from_reply,
)

log = logging.getLogger("modelhost.client")

Sink = Callable[[tuple], None]

_HANDSHAKE_FAILED = (zmq.EVENT_HANDSHAKE_FAILED_NO_DETAIL, zmq.EVENT_HANDSHAKE_FAILED_PROTOCOL, zmq.EVENT_HANDSHAKE_FAILED_AUTH)
_MONITORED = zmq.EVENT_HANDSHAKE_SUCCEEDED | zmq.EVENT_DISCONNECTED
for _event in _HANDSHAKE_FAILED:
    _MONITORED |= _event
_CLOSE_JOIN_S = 2.0  # close() waits this long for the I/O thread, never longer
SHM_ENV = "MODELHOST_SHM"  # "0": never offer shared memory
DIRECT_CALLS_ENV = "MODELHOST_DIRECT_CALLS"  # "0": a caller alone never borrows the socket
CLIENT_POOL_BYTES = 256 << 20  # the most a connection's own segments (request audio) hold
_HOST = "host"  # the one peer of a connection's pool


class _Pending:
    __slots__ = ("sink", "deadline")

    def __init__(self, sink: Sink, deadline: float) -> None:
        self.sink = sink
        self.deadline = deadline


class Connection:
    """The I/O thread and socket behind ``Client`` and ``AsyncClient``."""

    def __init__(
        self,
        address: str,
        *,
        token: str | None,
        heartbeat_s: float,
        liveness_s: float,
        limits: wire.Limits,
        server_key: str | bytes | os.PathLike | None = None,
        client_key: str | os.PathLike | None = None,
        shm_enabled: bool | None = None,
        direct_calls: bool | None = None,
    ) -> None:
        if heartbeat_s <= 0 or liveness_s <= heartbeat_s:
            raise ValueError(f"need 0 < heartbeat_s < liveness_s, got heartbeat_s={heartbeat_s}, liveness_s={liveness_s}")
        self.address = parse_address(address)
        # CURVE is a TCP matter: a server key in the environment does not stop ipc:// from working
        self._curve = security.client_curve(server_key, client_key) if self.address.is_tcp else None
        if self.address.is_tcp and not self.address.is_loopback and self._curve is None:
            raise ValueError(
                f"{self.address.url} is not on loopback: a remote host is reached only with CURVE encryption; pass "
                f"server_key= (CLI: --server-key) or set {security.SERVER_KEY_ENV} to the host's public key file (NAME.key)"
            )
        self._connected = False  # I/O thread: a handshake succeeded and the connection has not closed since
        self._refusal: HostUnreachableError | None = None  # I/O thread: the last failed handshake, until one succeeds
        self._token = token
        self._heartbeat_s = heartbeat_s
        self._liveness_s = liveness_s
        self._limits = limits
        if shm_enabled is None:
            shm_enabled = os.environ.get(SHM_ENV, "1") != "0"
        self._shm_on = shm_enabled and self.address.path is not None and shm.available()
        self._pool: shm.Pool | None = None  # this connection's segments, from the host's accept until a disconnect
        self._shm_sender: shm.Sender | None = None  # read by submit (any thread): set while the host accepts ours
        self._maps: shm.Mappings | None = None  # I/O thread: the host's segments, while we may read them
        if direct_calls is None:
            direct_calls = os.environ.get(DIRECT_CALLS_ENV, "1") != "0"
        self._direct = direct_calls
        self._ids = itertools.count(1)
        self._outbox: deque[tuple] = deque()
        self._wake_r, self._wake_w = _pipe()
        # the socket's owner: the I/O thread while it has work, else a caller borrowing it (``call``)
        self._sock_lock = threading.Lock()
        self._borrowing = False  # a caller holds the socket; read by _wake (any thread)
        self._intr_r, self._intr_w = _pipe()  # interrupts a borrowing caller: someone else needs the socket
        self._epoch = 0  # I/O thread: disconnects seen; a request borrowed across one is failed at adoption
        self._sock_open = True  # under _sock_lock: False once the I/O thread closed the socket
        self._owns = False  # I/O thread: it holds _sock_lock (work in flight), so it may use the socket
        self.direct_calls = 0  # calls that got their final event on the caller's thread (for tests and benchmarks)
        self._closed = threading.Event()
        self._ctx = zmq.Context()
        self._sock = self._ctx.socket(zmq.DEALER)
        self._sock.setsockopt(zmq.LINGER, 0)
        self._sock.setsockopt(zmq.RCVHWM, 0)
        self._sock.setsockopt(zmq.SNDHWM, 0)
        if self.address.is_ipv6:
            self._sock.setsockopt(zmq.IPV6, 1)
        if self._curve is not None:
            security.use_client_curve(self._sock, self._curve)
        self._monitor = self._sock.get_monitor_socket(_MONITORED)
        try:
            self._sock.connect(self.address.url)
        except zmq.ZMQError as exc:  # e.g. tcp://*:PORT, which a host may bind but nobody can connect to
            self._monitor.close(linger=0)
            self._sock.close(linger=0)
            self._ctx.term()
            for end in (self._wake_r, self._wake_w, self._intr_r, self._intr_w):
                end.close()
            raise ValueError(f"cannot connect to {self.address.url}: {exc.strerror}") from None
        self._borrow_poller = zmq.Poller()  # used by whoever borrows the socket, under _sock_lock
        self._borrow_poller.register(self._sock, zmq.POLLIN)
        self._borrow_poller.register(self._intr_r.fileno(), zmq.POLLIN)
        self._thread = threading.Thread(target=self._run, name="modelhost-client-io", daemon=True)
        self._thread.start()

    # ---- caller side (any thread) ----

    def submit(self, kind: str, body: dict[str, Any], sink: Sink, timeout_s: float) -> int:
        """Queue one request; its events go to ``sink``. Raises at once if it cannot be sent."""
        if self._closed.is_set():
            raise HostUnavailableError("this client is closed")
        _check_timeout(timeout_s)
        self._check_socket_file()
        request_id = next(self._ids)
        frames = wire.encode(kind, request_id, body, token=self._token, limits=self._limits, shm=self._shm_sender)
        self._outbox.append(("send", request_id, frames, _Pending(sink, time.monotonic() + timeout_s)))
        self._wake()
        return request_id

    def call(self, kind: str, body: dict[str, Any], sink: Sink, timeout_s: float) -> int:
        """``submit``, but a caller alone on the connection sends and waits on the socket in its own thread.

        Returns once the request's final event is in ``sink``, or once it was handed to the I/O thread
        (see the module docstring); either way its events are in ``sink`` as with ``submit``."""
        if not (self._direct and self._connected and self._refusal is None) or self._outbox:
            return self.submit(kind, body, sink, timeout_s)
        if not self._sock_lock.acquire(blocking=False):  # the I/O thread has work in flight
            return self.submit(kind, body, sink, timeout_s)
        _drain(self._intr_r)
        epoch = self._epoch
        self._borrowing = True
        try:
            if self._outbox or not self._sock_open or self._closed.is_set() or not self._connected:
                request_id = None
            else:
                request_id = self._borrowed(kind, body, sink, timeout_s, epoch)
        finally:
            self._borrowing = False
            self._sock_lock.release()
        if request_id is None:  # another thread got there first: the ordinary way
            return self.submit(kind, body, sink, timeout_s)
        return request_id

    def _borrowed(self, kind: str, body: dict[str, Any], sink: Sink, timeout_s: float, epoch: int) -> int:
        """Send and wait on the borrowed socket (caller's thread, under _sock_lock); hand over what is not done."""
        _check_timeout(timeout_s)
        self._check_socket_file()
        request_id = next(self._ids)
        frames = wire.encode(kind, request_id, body, token=self._token, limits=self._limits, shm=self._shm_sender)
        sent_s = time.monotonic()
        deadline = sent_s + timeout_s
        entry = _Pending(sink, deadline)
        not_final = [False]

        def borrowed_sink(event: tuple) -> None:
            not_final[0] = not_final[0] or event[0] in ("progress", "chunk")
            sink(event)

        mine = {request_id: _Pending(borrowed_sink, deadline)}
        self._send(frames)
        end = min(deadline, time.monotonic() + self._heartbeat_s / 2)
        while request_id in mine and not not_final[0]:
            wait_ms = (end - time.monotonic()) * 1000
            if wait_ms <= 0:
                break
            ready = dict(self._borrow_poller.poll(timeout=wait_ms))
            if self._sock in ready:
                self._receive(mine)
            if self._intr_r.fileno() in ready:
                break
        if request_id in mine:  # first in the I/O thread's queue: before anything sent after it
            self._outbox.appendleft(("adopt", request_id, entry, epoch, sent_s))
            self._wake()
        else:
            self.direct_calls += 1
        return request_id

    def cancel(self, request_id: int) -> None:
        """Ask the host to cancel a request; its sink still gets exactly one final event."""
        if not self._closed.is_set():
            self._outbox.append(("cancel", request_id))
            self._wake()

    def close(self) -> None:
        """Stop the I/O thread; outstanding requests end with HostUnavailableError. Safe to call twice.

        Never waits more than ``_CLOSE_JOIN_S``: if the I/O thread is stuck, the context is left to
        terminate on a daemon thread once it lets go of its sockets.
        """
        if self._closed.is_set():
            return
        self._closed.set()
        self._wake()
        self._thread.join(timeout=_CLOSE_JOIN_S)
        if self._thread.is_alive():
            log.warning("the modelhost client I/O thread did not stop within %.0f s; not waiting for it", _CLOSE_JOIN_S)
            threading.Thread(target=self._ctx.term, name="modelhost-client-close", daemon=True).start()
            return
        for end in (self._wake_r, self._wake_w, self._intr_r, self._intr_w):
            end.close()
        self._ctx.term()
        if self._pool is not None:
            self._pool.close()

    @property
    def shared_memory(self) -> bool:
        """Whether large arrays travel through shared memory with the host now (both ways)."""
        return self._shm_sender is not None and self._maps is not None

    def _check_socket_file(self) -> None:
        path = self.address.path
        if path is not None and not os.path.exists(path):
            raise HostUnreachableError(
                f"no modelhost host at {self.address.url} (socket file missing); start one with `modelhost serve`"
            )

    def _wake(self) -> None:
        """Wake the I/O thread; and a caller borrowing the socket, which then hands it back."""
        _poke(self._wake_w)
        if self._borrowing:
            _poke(self._intr_w)

    # ---- the I/O thread ----

    def _run(self) -> None:
        pending: dict[int, _Pending] = {}
        owning = zmq.Poller()  # with work in flight: the socket too
        owning.register(self._sock, zmq.POLLIN)
        owning.register(self._wake_r.fileno(), zmq.POLLIN)
        owning.register(self._monitor, zmq.POLLIN)
        parked = zmq.Poller()  # idle: the socket is free for a caller to borrow
        parked.register(self._wake_r.fileno(), zmq.POLLIN)
        parked.register(self._monitor, zmq.POLLIN)
        last_heard = last_ping = time.monotonic()
        ever_heard = False
        self._sock_lock.acquire()
        self._owns = True
        try:
            while not self._closed.is_set():
                if not pending and not self._outbox:
                    if self._owns:
                        self._owns = False
                        self._sock_lock.release()
                elif not self._owns:
                    self._sock_lock.acquire()  # a borrowing caller hands it back at once (_wake interrupted it)
                    self._owns = True
                wait_ms = 0 if self._owns and self._outbox else self._heartbeat_s * 1000 / 2
                ready = dict((owning if self._owns else parked).poll(timeout=wait_ms))
                now = time.monotonic()
                if self._wake_r.fileno() in ready:
                    _drain(self._wake_r)
                if self._monitor in ready:
                    self._read_monitor(pending)
                if not self._owns:
                    if not self._outbox and not ready and self._sock_lock.acquire(blocking=False):
                        try:  # idle for half a heartbeat: read what the host sent unasked (shm notes)
                            self._receive(pending)
                        finally:
                            self._sock_lock.release()
                    continue
                if self._outbox:
                    if not pending:  # idle until now: the liveness clock starts with this work (a borrow: when it was sent)
                        first = self._outbox[0]
                        last_heard = first[4] if first[0] == "adopt" else now
                    self._send_outbox(pending)
                if self._sock in ready:
                    heard = self._receive(pending)
                    if heard:
                        last_heard, ever_heard = now, True
                if not pending:
                    continue
                if now - last_ping >= self._heartbeat_s:
                    self._send(wire.encode("ping", 0, token=self._token))
                    last_ping = now
                if now - last_heard > self._liveness_s:
                    self._fail_all(pending, self._dead_error(ever_heard))
                    ever_heard = False
                    continue
                self._expire(pending, now)
        except Exception as exc:  # a bug here must not leave callers waiting forever
            log.exception("modelhost client I/O thread failed")
            self._fail_all(pending, HostUnavailableError(f"client I/O thread failed: {exc!r}"))
        finally:
            if not self._owns:  # a borrowing caller was interrupted by close(): it hands the socket back
                self._owns = self._sock_lock.acquire(timeout=_CLOSE_JOIN_S)
            said = self._say_detach()
            self._outbox_fail_remaining(pending)
            self._fail_all(pending, HostUnavailableError("this client is closed"))
            try:
                self._sock.disable_monitor()
            except zmq.ZMQError:
                pass  # close() gave up waiting for this thread and terminated the context meanwhile
            self._monitor.close(linger=0)
            self._sock.close(linger=200 if said else 0)  # the detach note gets a moment to leave
            self._sock_open = False
            if self._owns:
                self._sock_lock.release()

    def _send(self, frames: list[Any]) -> None:
        self._sock.send_multipart(frames, copy=False)

    def _send_outbox(self, pending: dict[int, _Pending]) -> None:
        releases: list[int] = []
        while self._outbox:
            item = self._outbox.popleft()
            if item[0] != "release" and releases:  # segments dropped before this request: the host may reuse them for it
                self._notify({"release": releases})
                releases = []
            if item[0] == "adopt":  # a borrowing caller's request, already sent
                _, request_id, entry, epoch, _ = item
                if epoch != self._epoch:  # the connection closed while it was borrowed
                    _deliver(entry, ("error", self._host_dead_error(1)))
                elif self._refusal is not None and not self._connected:
                    _deliver(entry, ("error", self._refusal))
                else:
                    pending[request_id] = entry
            elif item[0] == "send":
                _, request_id, frames, entry = item
                if self._refusal is not None and not self._connected:
                    _deliver(entry, ("error", self._refusal))  # the host refused this client: it would wait in vain
                    continue
                pending[request_id] = entry
                self._send(frames)
            elif item[0] == "release":
                releases.append(item[1])
            else:
                self._send_cancel(item[1])
        if releases:  # one notification for the segments the caller dropped since the last request
            self._notify({"release": releases})

    def _notify(self, body: dict[str, list[int]]) -> None:
        """One ``shm`` notification to the host (I/O thread); the host never answers it."""
        self._send(wire.encode("shm", 0, body, token=self._token))

    def _send_mapped(self, seg_id: int) -> None:
        """The first mapping of a host segment (I/O thread, while decoding): the host need not wait for us to exit."""
        self._notify({"mapped": [seg_id]})

    # ---- shared memory (I/O thread, but _release_later) ----

    def _attach(self, recv: bool) -> None:
        """Offer the host shared memory; ``recv``: we can map its segments too. Sent before any queued request."""
        if self._pool is None:
            self._pool = shm.Pool(max_bytes=CLIENT_POOL_BYTES)
        body: dict[str, Any] = {"pid": os.getpid(), "key": self._pool.key}
        if recv:
            body["recv"] = True
        request_id = next(self._ids)
        frames = wire.encode("attach", request_id, body, token=self._token, limits=self._limits)
        sink = _ignore if recv else self._on_attached
        self._outbox.appendleft(("send", request_id, frames, _Pending(sink, time.monotonic() + 10.0)))

    def _on_attached(self, event: tuple) -> None:
        if event[0] != "result" or not event[1].get("accept") or self._pool is None:
            if event[0] == "result":
                log.info("shared memory with the host is off: %s", event[1].get("reason", "not accepted"))
            return
        body = event[1]
        pid, key, min_bytes = body.get("pid"), body.get("key"), body.get("min_bytes")
        if type(pid) is not int or type(key) is not str or type(min_bytes) is not int:
            log.warning("the host's shared-memory answer is malformed; keeping frames")
            return
        self._pool.min_bytes = max(min_bytes, 1)
        self._shm_sender = self._pool.sender(_HOST)
        if shm.can_read(pid):
            maps = shm.Mappings(pid, key, lambda seg_id: self._release_later(maps, seg_id), self._send_mapped)
            self._maps = maps
            self._attach(recv=True)

    def _release_later(self, maps: shm.Mappings, seg_id: int) -> None:
        """A view into the host's segment was dropped (any thread): tell that host, if it is still ours."""
        if maps is self._maps and not self._closed.is_set():
            self._outbox.append(("release", seg_id))
            self._wake()

    def _detach(self) -> None:
        """The connection closed: the host that held our segments is gone, and so are its segments for us."""
        self._shm_sender, self._maps = None, None  # views already handed out keep their memory until dropped
        if self._pool is not None:
            self._pool.close()  # a new host gets a new pool (and key): nothing queued can reach stale memory
            self._pool = None

    def _say_detach(self) -> bool:
        """Closing: the host may reuse all it lent us but what our live arrays still read."""
        if self._pool is None or not self._connected:  # never attached (or the host is gone)
            return False
        held = self._maps.held() if self._maps is not None else []
        try:
            self._notify({"detach": held})
        except zmq.ZMQError:
            return False
        return True

    def _on_shm(self, body: dict[str, Any]) -> None:
        if body.get("release") and self._pool is not None:
            self._pool.release(body["release"], _HOST)
        if body.get("forget") and self._maps is not None:
            self._maps.forget(body["forget"])

    def _read_monitor(self, pending: dict[int, _Pending]) -> None:
        while True:
            try:
                frames = self._monitor.recv_multipart(flags=zmq.NOBLOCK)
            except zmq.Again:
                return
            # frame 0: the event (uint16) and its value (uint32), native byte order; frame 1: the endpoint.
            # Parsed here rather than with zmq.utils.monitor, which imports asyncio (~35 ms of a cold start).
            kind, value = struct.unpack("=HI", frames[0][:6])
            event = {"event": kind, "value": value}
            if kind == zmq.EVENT_HANDSHAKE_SUCCEEDED:
                self._connected, self._refusal = True, None
                if self._shm_on:
                    self._attach(recv=False)
            elif kind == zmq.EVENT_DISCONNECTED and self._connected:
                self._connected = False
                self._epoch += 1
                if self._owns:
                    self._receive(pending)  # replies that arrived before the connection closed still count
                elif self._borrowing:
                    _poke(self._intr_w)  # a borrowed request hears of the disconnect at its adoption
                self._detach()
                if pending:
                    self._fail_all(pending, self._host_dead_error(len(pending)))
            elif kind in _HANDSHAKE_FAILED:
                self._connected = False
                if self._borrowing:
                    _poke(self._intr_w)
                self._refusal = HostUnreachableError(self._refusal_message(kind, event["value"]))
                self._fail_all(pending, self._refusal)

    def _host_dead_error(self, in_flight: int) -> HostDeadError:
        return HostDeadError(
            f"the host at {self.address.url} stopped answering: its connection closed with "
            f"{in_flight} request(s) in flight (killed or crashed?); restart it with `modelhost serve`"
        )

    def _refusal_message(self, kind: int, value: int) -> str:
        url, curve = self.address.url, self._curve
        if kind == zmq.EVENT_HANDSHAKE_FAILED_AUTH and curve is not None:
            own = ("this client has no key of its own: set MODELHOST_CLIENT_KEY to an allowed client's .key_secret file"
                   if curve.ephemeral else "copy this client's NAME.key into the host's curve_clients folder and restart the host")
            return (f"the host at {url} refused this client's CURVE key {curve.keys.public.decode()} (not on its "
                    f"curve_clients allow-list); {own}")
        set_key = f"pass server_key= (CLI: --server-key) or set {security.SERVER_KEY_ENV} to its public key file (NAME.key)"
        if curve is None:  # a CURVE host answers a plain client with no detail first, then with a mechanism mismatch
            if value == zmq.PROTOCOL_ERROR_ZMTP_MECHANISM_MISMATCH:
                return f"the host at {url} requires CURVE encryption: {set_key}"
            return f"the handshake with the host at {url} failed; if that host requires CURVE encryption, {set_key}"
        if value == zmq.PROTOCOL_ERROR_ZMTP_MECHANISM_MISMATCH:
            return (f"the host at {url} does not use CURVE encryption: leave out server_key= and "
                    f"{security.SERVER_KEY_ENV} for it")
        return (f"the CURVE handshake with the host at {url} failed: the server key this client pinned "
                f"({curve.server_public.decode()}, from server_key= or {security.SERVER_KEY_ENV}) is not the host's "
                "public key; use the NAME.key file next to the host's curve_secret_key")

    def _send_cancel(self, target: int) -> None:
        self._send(wire.encode("cancel", next(self._ids), {"target": target}, token=self._token))

    def _receive(self, pending: dict[int, _Pending]) -> bool:
        heard = False
        while True:
            try:
                frames = self._sock.recv_multipart(flags=zmq.NOBLOCK, copy=False)
            except zmq.Again:
                return heard
            heard = True
            try:
                msg = wire.decode(frames, limits=self._limits, shm=self._maps)
            except RequestError as exc:
                entry = pending.pop(exc.request_id, None) if exc.request_id is not None else None
                if entry is not None:
                    _deliver(entry, ("error", ProtocolError(f"the host sent a reply this client cannot read: {exc}")))
                else:
                    log.warning("dropped an unreadable message from the host: %s", exc)
                continue
            self._route(msg, pending)

    def _route(self, msg: wire.Message, pending: dict[int, _Pending]) -> None:
        if msg.kind == "pong":
            return
        if msg.kind == "shm":
            self._on_shm(msg.body)
            return
        entry = pending.get(msg.id)
        if entry is None:
            return  # a late reply to a request that already ended (deadline, cancel)
        if msg.kind == "progress":
            _deliver(entry, ("progress", msg.body["step"], msg.body["total"]))
        elif msg.kind == "chunk":
            _deliver(entry, ("chunk", msg.body))
        elif msg.kind == "result":
            del pending[msg.id]
            _deliver(entry, ("result", msg.body))
        elif msg.kind == "error":
            del pending[msg.id]
            _deliver(entry, ("error", error_from_reply(msg.body["code"], msg.body["message"], msg.id)))
        else:
            del pending[msg.id]
            _deliver(entry, ("error", ProtocolError(f"the host replied with a request kind {msg.kind!r}")))

    def _expire(self, pending: dict[int, _Pending], now: float) -> None:
        expired = [rid for rid, entry in pending.items() if entry.deadline <= now]
        for rid in expired:
            entry = pending.pop(rid)
            self._send_cancel(rid)  # the host stops working on it; its late reply is dropped
            _deliver(entry, ("error", DeadlineExceededError("the request did not finish within its timeout_s", request_id=rid)))

    def _dead_error(self, ever_heard: bool) -> HostUnavailableError:
        if self._refusal is not None and not self._connected:
            return self._refusal
        if ever_heard or self._connected:
            return HostDeadError(
                f"the host at {self.address.url} stopped answering for {self._liveness_s:g} s (killed or crashed?); "
                "restart it with `modelhost serve`"
            )
        hint = f" (and check that {security.SERVER_KEY_ENV} is that host's public key)" if self._curve is not None else ""
        return HostUnreachableError(
            f"no modelhost host answered at {self.address.url} within {self._liveness_s:g} s; start one with "
            f"`modelhost serve`{hint}"
        )

    def _fail_all(self, pending: dict[int, _Pending], exc: ModelhostError) -> None:
        for entry in pending.values():
            _deliver(entry, ("error", exc))
        pending.clear()

    def _outbox_fail_remaining(self, pending: dict[int, _Pending]) -> None:
        while self._outbox:
            item = self._outbox.popleft()
            if item[0] == "send":
                pending[item[1]] = item[3]
            elif item[0] == "adopt":
                pending[item[1]] = item[2]


def _ignore(event: tuple) -> None:
    pass


def _pipe() -> tuple[socket.socket, socket.socket]:
    """A non-blocking socketpair: one thread pokes, another polls the read end."""
    read, write = socket.socketpair()
    read.setblocking(False)
    write.setblocking(False)
    return read, write


def _poke(write: socket.socket) -> None:
    try:
        write.send(b"\0")
    except (BlockingIOError, OSError):
        pass  # the pipe is full (the reader wakes anyway) or closed (we are shutting down)


def _drain(read: socket.socket) -> None:
    """Empty a pipe's read end: one read of what a burst of pokes left (a rare overflow wakes the poll again)."""
    try:
        read.recv(4096)
    except (BlockingIOError, OSError):
        pass


def _deliver(entry: _Pending, event: tuple) -> None:
    try:
        entry.sink(event)
    except Exception:
        log.exception("a modelhost request sink raised")


def _check_timeout(timeout_s: Any) -> None:
    if not isinstance(timeout_s, (int, float)) or isinstance(timeout_s, bool) or not 0 < timeout_s <= wire.MAX_TIMEOUT_S:
        raise ValueError(f"timeout_s must be a number of seconds above 0 and at most {wire.MAX_TIMEOUT_S:.0f} "
                         f"(30 days), got {timeout_s!r}")
