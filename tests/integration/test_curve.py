"""CURVE on TCP and the client's view of its connection, with real hosts in subprocesses: the keys
command, a host reachable off loopback (CURVE and an allow-list), a loopback host with CURVE and a
token, every refusal a clear error at once (never a hang), a host killed under an accepted request
(HostDeadError from the socket monitor, long before the liveness window), and a close() that never
waits on a stuck I/O thread."""

from __future__ import annotations

import asyncio
import os
import signal
import socket
import stat
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest

from modelhost.client import AsyncClient, Client
from modelhost.client.protocol import errors as E
from modelhost.client.connection import Connection
from modelhost.client.protocol.security import KeyFileError, load_key_pair, load_public_key
from modelhost.client.protocol import wire
from tests.conftest import ROOT, SLOW_MODEL, short_tmp, start_host

TOKEN = "curve-test-token-0123456789"


def modelhost(*args: str, env: dict[str, str] | None = None, timeout: float = 60) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "modelhost.host", *args], cwd=ROOT, capture_output=True, text=True,
                          timeout=timeout, env={**os.environ, **(env or {})})


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _wait_ready(h, **client_kwargs) -> None:
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline:
        if h.proc.poll() is not None:
            raise RuntimeError(f"host exited with {h.proc.returncode}:\n{h.log()}")
        try:
            with Client(h.address, liveness_s=2.0, **client_kwargs) as c:
                if c.health(timeout_s=5)["ready"]:
                    return
        except E.HostUnavailableError:
            time.sleep(0.2)
    raise RuntimeError(f"host not ready:\n{h.log()}")


@pytest.fixture(scope="module")
def keys() -> Path:
    """A host pair, an allowed client (alice), a client not on the list (mallory), and the allow-list folder."""
    folder = short_tmp("mh-keys-")
    for name in ("modelhost", "alice", "mallory"):
        done = modelhost("keys", str(folder / "keys"), "--name", name)
        assert done.returncode == 0, done.stderr
    (folder / "clients").mkdir()
    (folder / "clients" / "alice.key").write_bytes((folder / "keys" / "alice.key").read_bytes())
    return folder


@pytest.fixture(scope="module")
def remote_host(keys):
    """A host that listens on every interface (as one reachable from other machines would): CURVE and
    an allow-list, no token. Clients reach it through 127.0.0.1."""
    port = _free_port()
    h = start_host(f"""
        [host]
        heartbeat_s = 0.25
        curve_secret_key = "{keys / 'keys' / 'modelhost.key_secret'}"
        curve_clients = "{keys / 'clients'}"

        [models.synth]
        backend = "synth"
        width = 32
    """, address=f"tcp://0.0.0.0:{port}", wait_ready=False, env={"MODELHOST_TOKEN": ""})
    h.client_url = f"tcp://127.0.0.1:{port}"
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("MODELHOST_CLIENT_KEY", str(keys / "keys" / "alice.key_secret"))
        _wait_ready(h, server_key=str(keys / "keys" / "modelhost.key"))
    yield h
    assert h.stop() == 0, h.log()


def test_keys_writes_a_public_file_and_a_0600_secret_and_never_overwrites(tmp_path) -> None:
    done = modelhost("keys", str(tmp_path / "new"), "--name", "box")
    assert done.returncode == 0, done.stderr
    public, secret = tmp_path / "new" / "box.key", tmp_path / "new" / "box.key_secret"
    assert stat.S_IMODE(secret.stat().st_mode) == 0o600 and stat.S_IMODE(public.stat().st_mode) == 0o644
    assert stat.S_IMODE((tmp_path / "new").stat().st_mode) == 0o700
    pair = load_key_pair(secret)
    assert load_public_key(public) == pair.public and len(pair.secret) == 40
    assert pair.public.decode() in done.stdout
    again = modelhost("keys", str(tmp_path / "new"), "--name", "box")
    assert again.returncode == 2 and again.stderr.count("\n") == 1 and "already exists" in again.stderr
    assert load_key_pair(secret) == pair  # untouched


def test_key_loading_errors_are_one_clear_line(tmp_path) -> None:
    with pytest.raises(KeyFileError, match="does not exist; write a pair with `modelhost keys DIR`"):
        load_public_key(tmp_path / "missing.key")
    (tmp_path / "junk.key").write_text("hello\n")
    with pytest.raises(KeyFileError, match="not a CURVE key file"):
        load_public_key(tmp_path / "junk.key")
    (tmp_path / "short.key").write_text('curve\n    public-key = "abc"\n')
    with pytest.raises(KeyFileError, match="malformed"):
        load_public_key(tmp_path / "short.key")
    modelhost("keys", str(tmp_path), "--name", "open")
    os.chmod(tmp_path / "open.key_secret", 0o644)
    with pytest.raises(KeyFileError, match="chmod 600"):
        load_key_pair(tmp_path / "open.key_secret")
    with pytest.raises(KeyFileError, match="holds no secret key"):
        load_key_pair(tmp_path / "open.key")
    z85 = load_public_key(tmp_path / "open.key")
    assert load_public_key(z85.decode()) == z85  # the key's 40 characters work as well as its file


def test_the_right_keys_work_sync_and_async(remote_host, keys, monkeypatch) -> None:
    monkeypatch.setenv("MODELHOST_CLIENT_KEY", str(keys / "keys" / "alice.key_secret"))
    with Client(remote_host.client_url, server_key=str(keys / "keys" / "modelhost.key")) as c:
        assert c.generate("synth", params={"duration_s": 0.1}).audio.size == 3200

    async def run() -> int:
        async with AsyncClient(remote_host.client_url) as c:  # the server key from the environment, as z85 text
            return (await c.generate("synth", params={"duration_s": 0.1})).audio.size

    monkeypatch.setenv("MODELHOST_SERVER_KEY", load_public_key(keys / "keys" / "modelhost.key").decode())
    assert asyncio.run(run()) == 3200


@pytest.mark.parametrize("case, needle", [
    ("wrong server key", "is not the host's public key"),
    ("not on the allow-list", "not on its curve_clients allow-list"),
    ("ephemeral client key", "not on its curve_clients allow-list"),
    ("no server key", "requires CURVE encryption"),
])
def test_refused_clients_get_a_clear_error_at_once(remote_host, keys, monkeypatch, case, needle) -> None:
    k = keys / "keys"
    server_key, client_key = str(k / "modelhost.key"), str(k / "alice.key_secret")
    if case == "wrong server key":
        server_key = str(k / "mallory.key")
    elif case == "not on the allow-list":
        client_key = str(k / "mallory.key_secret")
    elif case == "ephemeral client key":
        client_key = None
    monkeypatch.delenv("MODELHOST_SERVER_KEY", raising=False)
    monkeypatch.delenv("MODELHOST_CLIENT_KEY", raising=False)
    if client_key:
        monkeypatch.setenv("MODELHOST_CLIENT_KEY", client_key)
    url = remote_host.client_url
    if case == "no server key":  # loopback TCP without a key is allowed client-side; this host still refuses it
        kwargs = {"token": TOKEN}
    else:
        kwargs = {"server_key": server_key}
    with Client(url, liveness_s=30.0, **kwargs) as c:
        started = time.monotonic()
        with pytest.raises(E.HostUnreachableError, match=needle):
            c.health(timeout_s=60)
        with pytest.raises(E.HostUnreachableError, match=needle):  # and again, at once, for the next call
            c.health(timeout_s=60)
        assert time.monotonic() - started < 3.0  # the handshake's answer, not the liveness window or the timeout


def test_a_remote_address_needs_a_server_key_on_the_client_side(monkeypatch) -> None:
    monkeypatch.delenv("MODELHOST_SERVER_KEY", raising=False)
    with pytest.raises(ValueError, match="MODELHOST_SERVER_KEY"):
        Client("tcp://10.1.2.3:5555")
    done = modelhost("health", "--address", "tcp://10.1.2.3:5555", env={"MODELHOST_SERVER_KEY": ""})
    assert done.returncode == 2 and done.stderr.count("\n") == 1 and "--server-key" in done.stderr


def test_non_loopback_tcp_without_curve_is_refused_at_start(tmp_path) -> None:
    catalog = tmp_path / "catalog.toml"
    catalog.write_text('[models.synth]\nbackend = "synth"\n')
    done = modelhost("serve", "--config", str(catalog), "--address", f"tcp://0.0.0.0:{_free_port()}",
                     env={"MODELHOST_TOKEN": TOKEN})
    assert done.returncode == 2, done.stderr
    assert done.stderr.count("\n") == 1 and "Traceback" not in done.stderr
    assert "needs CURVE encryption" in done.stderr and "modelhost keys DIR" in done.stderr


def test_loopback_ipv6_with_curve_and_a_token(keys, monkeypatch) -> None:
    """tcp://[::1]: CURVE with any client key (no allow-list), so the token authenticates clients."""
    port = _free_port()
    address = f"tcp://[::1]:{port}"
    h = start_host(f"""
        [host]
        curve_secret_key = "{keys / 'keys' / 'modelhost.key_secret'}"

        [models.synth]
        backend = "synth"
        width = 32
    """, address=address, wait_ready=False, env={"MODELHOST_TOKEN": TOKEN})
    try:
        monkeypatch.delenv("MODELHOST_CLIENT_KEY", raising=False)
        server_key = str(keys / "keys" / "modelhost.key")
        _wait_ready(h, server_key=server_key, token=TOKEN)
        with Client(address, server_key=server_key, token=TOKEN) as c:  # an ephemeral client key is fine here
            assert c.generate("synth", params={"duration_s": 0.1}).audio.size == 3200
        with Client(address, server_key=server_key, token="wrong-token-0123456789") as c:
            with pytest.raises(E.UnauthorizedError):
                c.health()
    finally:
        assert h.stop() == 0, h.log()


@pytest.fixture
def slow_host():
    h = start_host(f"""
        [host]
        heartbeat_s = 0.25

        [models.slow]
        {SLOW_MODEL}
    """)
    yield h
    h.stop()


@pytest.mark.parametrize("flavour", ["sync", "async"])
def test_kill_9_under_an_accepted_generate_raises_host_dead_at_once(slow_host, flavour) -> None:
    """liveness_s is 60 s: only the socket monitor (the connection closed after a handshake) can
    end the request within seconds, and it must say HostDeadError, not "start one"."""
    outcome: list[BaseException] = []
    killed_at: list[float] = []

    def kill_when_running() -> None:
        with Client(slow_host.address) as watcher:
            deadline = time.monotonic() + 60
            while watcher.health()["jobs"]["running"] == 0 and time.monotonic() < deadline:
                time.sleep(0.05)
        os.kill(slow_host.proc.pid, signal.SIGKILL)
        killed_at.append(time.monotonic())

    killer = threading.Thread(target=kill_when_running)
    killer.start()
    try:
        if flavour == "sync":
            with Client(slow_host.address, liveness_s=60.0) as c:
                with pytest.raises(E.HostDeadError) as info:
                    c.generate("slow", params={"duration_s": 300.0}, timeout_s=120)
        else:
            async def run() -> None:
                async with AsyncClient(slow_host.address, liveness_s=60.0) as c:
                    await c.generate("slow", params={"duration_s": 300.0}, timeout_s=120)

            with pytest.raises(E.HostDeadError) as info:
                asyncio.run(run())
        outcome.append(info.value)
        elapsed = time.monotonic() - killed_at[0]
    finally:
        killer.join(60)
    assert "stopped answering" in str(outcome[0]) and "start one" not in str(outcome[0])
    assert elapsed < 5.0


def test_close_does_not_wait_on_a_stuck_io_thread(slow_host) -> None:
    release = threading.Event()
    conn = Connection(slow_host.address, token=None, heartbeat_s=0.25, liveness_s=5.0, limits=wire.DEFAULT_LIMITS)
    stuck = threading.Event()

    def sink(event: tuple) -> None:  # a sink that never returns wedges the I/O thread
        stuck.set()
        release.wait(60)

    try:
        conn.submit("health", {}, sink, timeout_s=30)
        assert stuck.wait(30)
        started = time.monotonic()
        conn.close()
        assert time.monotonic() - started < 4.0
    finally:
        release.set()
