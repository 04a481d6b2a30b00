"""Catalog and address validation: a bad config fails at start with a message naming the key."""

from __future__ import annotations

import math
import os

import pytest

from modelhost.client.protocol.address import parse_address
from modelhost.client.protocol.security import write_key_pair
from modelhost.host.config import ConfigError, check_on_this_machine, parse_config


def test_a_voice_folder_expands_to_one_model_per_voice_with_its_index(tmp_path) -> None:
    for name in ("alice.pth", "bob.pth", "alice.index", "added_IVF256_Flat_nprobe_1_bob_v2.index", "trained_x_bob.index"):
        (tmp_path / name).write_bytes(b"")
    raw = {"preload": ["voices"], "models": {"voices": {"backend": "rvc", "folder": str(tmp_path), "hubert": "/h.pt"}}}
    config = parse_config(raw, address="ipc:///tmp/x/host.sock")
    assert config.preload == ("voices/alice", "voices/bob")
    alice, bob = config.models["voices/alice"].options, config.models["voices/bob"].options
    assert alice == {"model": str(tmp_path / "alice.pth"), "index": str(tmp_path / "alice.index"), "hubert": "/h.pt"}
    assert bob["index"] == str(tmp_path / "added_IVF256_Flat_nprobe_1_bob_v2.index")
    with pytest.raises(ConfigError, match="holds no .pth voices"):
        parse_config({"models": {"v": {"backend": "rvc", "folder": str(tmp_path / "none")}}}, address="ipc:///tmp/x/h.sock")


@pytest.mark.parametrize(
    "raw, needle",
    [
        ({"models": {"a": {"backend": "nope"}}}, "known backends"),
        ({"models": {"a": {"device": "cpu"}}}, "backend = None"),
        ({"preload": ["ghost"], "models": {}}, "[models.ghost]"),
        ({"preload": "a"}, "preload must be a list"),
        ({"host": {"heartbeat_s": -1}}, "heartbeat_s must be a positive"),
        ({"host": {"heartbeat_s": 1, "client_liveness_s": 1.5}}, "client_liveness_s"),
        ({"host": {"colour": "red"}}, "unknown keys in [host]"),
        ({"extra": 1}, "unknown top-level keys"),
        ({"host": {"max_frames": 0}}, "max_frames"),
        ({"host": {"max_message_bytes": [1]}}, "max_message_bytes must be a positive whole number, got [1]"),
        ({"host": {"max_message_bytes": -5}}, "max_message_bytes must be a positive whole number"),
        ({"host": {"max_message_bytes": True}}, "max_message_bytes must be a positive whole number"),
        ({"host": {"max_message_bytes": 1.5}}, "max_message_bytes must be a positive whole number"),
        ({"host": {"max_message_bytes": math.inf}}, "max_message_bytes must be a positive whole number"),
        ({"host": {"max_message_bytes": 100}}, "at least 1024"),
        ({"host": {"max_frames": "8"}}, "max_frames must be a positive whole number"),
        ({"host": {"heartbeat_s": math.nan}}, "heartbeat_s must be a positive"),
        ({"host": {"heartbeat_s": math.inf}}, "heartbeat_s must be a positive"),
        ({"host": {"drain_timeout_s": math.inf}}, "drain_timeout_s must be a positive"),
        ({"host": {"client_liveness_s": "5"}}, "client_liveness_s must be a positive"),
        ({"host": {"token_file": 5}}, "token_file must be a path"),
        ({"models": {"a": {"backend": "synth", "keep_alive": math.nan}}}, "keep_alive must be seconds"),
        ({"models": {"a": {"backend": "synth", "keep_alive": -1}}}, "keep_alive must be seconds"),
        ({"models": {"a": {"backend": "synth", "reserve": -1}}}, "reserve must be bytes"),
        ({"models": {"a": {"backend": "synth", "memory": [1]}}}, "memory must be bytes"),
        ({"models": {"a": {"backend": "synth", "max_batch_size": 0}}}, "max_batch_size must be an int from 1"),
        ({"models": {"a": {"backend": "synth", "max_batch_size": 2.5}}}, "max_batch_size must be an int from 1"),
        ({"models": {"a": {"backend": "synth", "max_batch_size": True}}}, "max_batch_size must be an int from 1"),
        ({"models": {"a": {"backend": "synth", "max_batch_size": 257}}}, "max_batch_size must be an int from 1"),
        ({"models": {"a": {"backend": "synth", "batch_window_ms": -1}}}, "batch_window_ms must be milliseconds"),
        ({"models": {"a": {"backend": "synth", "batch_window_ms": "5ms"}}}, "batch_window_ms must be milliseconds"),
        ({"models": {"a": {"backend": "synth", "activation": "lots"}}}, "activation must be bytes"),
        ({"budget": {"cpu": math.nan}}, "[budget] cpu"),
        ({"budget": {"cpu": -0.5}}, "[budget] cpu"),
        ({"host": {"curve_clients": "/x"}}, "curve_clients needs curve_secret_key"),
        ({"host": {"curve_secret_key": "/x/modelhost.key_secret"}}, "curve_secret_key encrypts tcp:// only"),
        ({"host": {"curve_secret_key": 5}}, "curve_secret_key must be a path"),
    ],
)
def test_bad_catalogs_name_the_problem(raw, needle) -> None:
    with pytest.raises(ConfigError) as info:
        parse_config(raw, address="ipc:///tmp/x/host.sock")
    assert needle in str(info.value)


def test_tcp_needs_loopback_and_a_token(monkeypatch, tmp_path) -> None:
    monkeypatch.delenv("MODELHOST_TOKEN", raising=False)
    with pytest.raises(ConfigError, match="not on loopback"):
        parse_config({}, address="tcp://0.0.0.0:5555")
    with pytest.raises(ConfigError, match="needs a token"):
        parse_config({}, address="tcp://127.0.0.1:5555")
    monkeypatch.setenv("MODELHOST_TOKEN", "short")
    with pytest.raises(ConfigError, match="shorter than 16"):
        parse_config({}, address="tcp://127.0.0.1:5555")
    token_file = tmp_path / "token"
    token_file.write_text("a-long-random-token-0123456789\n")
    config = parse_config({"host": {"token_file": str(token_file)}}, address="tcp://[::1]:5555")
    assert config.token == "a-long-random-token-0123456789"


@pytest.mark.parametrize("url, needle", [
    ("ipc://relative/path", "absolute path"),
    ("tcp://127.0.0.1", "needs a host and a port"),
    ("tcp://127.0.0.1:0", "needs a host and a port"),
    ("tcp://127.0.0.1:99999", "needs a host and a port"),
    ("tcp://::1:5555", "IPv6 host goes in brackets"),
    ("http://x", "must start with ipc:// or tcp://"),
    (5, "must be a string"),
    (None, "must be a string"),
    (b"ipc:///tmp/x.sock", "must be a string"),
    ("ipc:///" + "x" * 107, "108 bytes, over the 107-byte limit"),
])
def test_addresses_that_are_refused(url, needle: str) -> None:
    with pytest.raises(ValueError) as info:
        parse_address(url)
    assert needle in str(info.value) and "\n" not in str(info.value)


@pytest.mark.parametrize("url, host, ipv6, loopback", [
    ("tcp://[::1]:5555", "::1", True, True),
    ("tcp://127.0.0.2:5555", "127.0.0.2", False, True),
    ("tcp://localhost:5555", "localhost", False, True),
    ("tcp://[::ffff:127.0.0.1]:5555", "::ffff:127.0.0.1", True, True),
    ("tcp://0.0.0.0:5555", "0.0.0.0", False, False),
    ("tcp://[::]:5555", "::", True, False),
    ("tcp://10.0.0.1:80", "10.0.0.1", False, False),
    ("tcp://example.com:80", "example.com", False, False),
])
def test_tcp_addresses_parse_with_their_family_and_reach(url: str, host: str, ipv6: bool, loopback: bool) -> None:
    addr = parse_address(url)
    assert (addr.host, addr.port, addr.is_ipv6, addr.is_loopback) == (host, int(url.rsplit(":", 1)[1]), ipv6, loopback)


def test_an_ipc_path_of_exactly_107_bytes_is_allowed() -> None:
    assert parse_address("ipc:///" + "x" * 106).path == "/" + "x" * 106


def test_a_wrongly_typed_or_too_long_address_in_the_catalog_names_it() -> None:
    with pytest.raises(ConfigError, match=r"cat.toml: an address must be a string .* got 5 \(int\)"):
        parse_config({"host": {"address": 5}}, source="cat.toml")
    with pytest.raises(ConfigError, match="107-byte limit"):
        parse_config({"host": {"address": "ipc:///" + "y" * 200}}, source="cat.toml")


@pytest.fixture
def host_keys(tmp_path):
    write_key_pair(tmp_path / "keys")
    write_key_pair(tmp_path / "clients", "alice")
    os.remove(tmp_path / "clients" / "alice.key_secret")
    return tmp_path


def test_non_loopback_tcp_needs_curve_and_an_allow_list_or_a_token(host_keys, monkeypatch) -> None:
    monkeypatch.delenv("MODELHOST_TOKEN", raising=False)
    secret = str(host_keys / "keys" / "modelhost.key_secret")
    with pytest.raises(ConfigError, match="needs CURVE encryption.*modelhost keys DIR"):
        parse_config({}, address="tcp://0.0.0.0:5555")
    with pytest.raises(ConfigError, match="needs a token"):  # CURVE alone lets anyone who has the public key in
        parse_config({"host": {"curve_secret_key": secret}}, address="tcp://0.0.0.0:5555")
    config = parse_config({"host": {"curve_secret_key": secret, "curve_clients": str(host_keys / "clients")}},
                          address="tcp://0.0.0.0:5555")
    assert config.token is None and config.curve.clients_dir == str(host_keys / "clients")
    assert config.curve.keys.public == (host_keys / "keys" / "modelhost.key").read_text().split('"')[1].encode()
    assert "secret" not in repr(config.curve)  # the secret key never lands in a log line
    monkeypatch.setenv("MODELHOST_TOKEN", "a-long-random-token-0123456789")
    config = parse_config({"host": {"curve_secret_key": secret}}, address="tcp://[::1]:5555")
    assert config.curve.clients_dir is None and config.token


def test_bad_curve_files_fail_at_start(host_keys, monkeypatch) -> None:
    monkeypatch.setenv("MODELHOST_TOKEN", "a-long-random-token-0123456789")
    secret = host_keys / "keys" / "modelhost.key_secret"

    def parse(**host):
        return parse_config({"host": host}, address="tcp://0.0.0.0:5555", source="cat.toml")

    with pytest.raises(ConfigError, match="cat.toml: \\[host\\] CURVE secret key file /nope.key_secret does not exist"):
        parse(curve_secret_key="/nope.key_secret")
    with pytest.raises(ConfigError, match="holds no secret key"):
        parse(curve_secret_key=str(host_keys / "keys" / "modelhost.key"))
    (host_keys / "empty").mkdir()
    with pytest.raises(ConfigError, match="holds no \\*.key files"):
        parse(curve_secret_key=str(secret), curve_clients=str(host_keys / "empty"))
    with pytest.raises(ConfigError, match="does not exist"):
        parse(curve_secret_key=str(secret), curve_clients=str(host_keys / "missing"))
    os.chmod(secret, 0o640)
    with pytest.raises(ConfigError, match="chmod 600"):
        parse(curve_secret_key=str(secret))


@pytest.mark.parametrize("model, needle", [
    ({"backend": "nowhere.at_all:Thing"}, "[models.a] backend 'nowhere.at_all:Thing': cannot import nowhere.at_all"),
    ({"backend": "json:JSONDecoder"}, "has no Backend subclass named 'JSONDecoder'"),
    ({"backend": "synth", "device": "cuda:7"}, "[models.a] device 'cuda:7'"),
    ({"backend": "synth", "device": "tpu"}, "[models.a] device 'tpu' is not a torch device"),
    ({"backend": "synth", "device": "mps"}, "[models.a] device 'mps' is not supported"),
])
def test_what_only_this_machine_can_tell_is_checked_at_start(model, needle) -> None:
    config = parse_config({"models": {"a": model}}, address="ipc:///tmp/x/h.sock", source="cat.toml")
    with pytest.raises(ConfigError) as info:
        check_on_this_machine(config)
    assert str(info.value).startswith("cat.toml: ") and needle in str(info.value)


def test_cuda_on_a_machine_without_it_is_refused_at_start() -> None:
    import torch

    if torch.cuda.is_available():
        pytest.skip("this machine has CUDA: device = \"cuda\" is valid here")
    config = parse_config({"models": {"a": {"backend": "synth", "device": "cuda"}}}, address="ipc:///tmp/x/h.sock")
    with pytest.raises(ConfigError, match="no CUDA device; use device = \"cpu\""):
        check_on_this_machine(config)
    check_on_this_machine(parse_config({"models": {"a": {"backend": "synth", "device": "cpu"}}}, address="ipc:///tmp/x/h.sock"))


def test_backend_options_are_checked_before_start() -> None:
    from modelhost.host.backends import create_backend

    config = parse_config({"models": {"s": {"backend": "synth", "widht": 3}}}, address="ipc:///tmp/x/h.sock")
    with pytest.raises(ValueError, match="unknown synth options"):
        create_backend(config.models["s"])


def test_the_24gb_example_catalog_is_valid() -> None:
    from modelhost.host.backends import create_backend
    from modelhost.host.config import load_config
    from tests.support.launch import ROOT

    config = load_config(str(ROOT / "examples" / "catalog-24gb.toml"), address="ipc:///tmp/x/host.sock")
    assert config.preload == ("musicgen-large", "audiogen", "voice-a", "voice-b")
    assert {m.backend for m in config.models.values()} == {"musicgen", "audiogen", "rvc"}
    for spec in config.models.values():
        create_backend(spec)  # every model's options pass its backend's checks


def test_batching_keys_are_read_and_default_to_the_backend() -> None:
    raw = {"models": {"a": {"backend": "musicgen", "checkpoint": "x", "max_batch_size": 4, "batch_window_ms": 0,
                            "activation": "64MiB"},
                      "b": {"backend": "synth"}}}
    config = parse_config(raw, address="ipc:///tmp/x/host.sock")
    a, b = config.models["a"], config.models["b"]
    assert (a.max_batch_size, a.batch_window_ms, a.activation_bytes_per_s) == (4, 0.0, 64 * 2**20)
    assert "max_batch_size" not in a.options and "batch_window_ms" not in a.options  # host keys, not the backend's
    assert (b.max_batch_size, b.batch_window_ms) == (None, 5.0)
