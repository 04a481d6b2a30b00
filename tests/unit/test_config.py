"""Catalog and address validation: a bad config fails at start with a message naming the key."""

from __future__ import annotations

import pytest

from modelhost.client.address import parse_address
from modelhost.host.config import ConfigError, parse_config


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


@pytest.mark.parametrize("url", ["ipc://relative/path", "tcp://127.0.0.1", "http://x", "tcp://10.0.0.1:80", "tcp://example.com:80"])
def test_addresses_that_are_refused(url: str) -> None:
    with pytest.raises(ValueError):
        parse_address(url)


def test_backend_options_are_checked_before_start() -> None:
    from modelhost.host.backends import create_backend

    config = parse_config({"models": {"s": {"backend": "synth", "widht": 3}}}, address="ipc:///tmp/x/h.sock")
    with pytest.raises(ValueError, match="unknown synth options"):
        create_backend(config.models["s"])


def test_the_24gb_example_catalog_is_valid() -> None:
    from modelhost.host.backends import create_backend
    from modelhost.host.config import load_config
    from modelhost.host.launch import ROOT

    config = load_config(str(ROOT / "examples" / "catalog-24gb.toml"), address="ipc:///tmp/x/host.sock")
    assert config.preload == ("musicgen-large", "audiogen", "voice-a", "voice-b")
    assert {m.backend for m in config.models.values()} == {"musicgen", "audiogen", "rvc"}
    for spec in config.models.values():
        create_backend(spec)  # every model's options pass its backend's checks
