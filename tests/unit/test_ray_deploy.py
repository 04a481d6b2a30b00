"""What a catalog entry becomes on Ray Serve (host.ray_deploy's pure rules, and [ray] in the catalog)."""

from __future__ import annotations

import pytest

from modelhost.host.config import ConfigError, ModelSpec, RayDeployment, load_config, parse_config
from modelhost.host.ray_deploy import app_name, deployment_options, fingerprint, replica_budgets, replica_config

ADDRESS = "ipc:///tmp/x/host.sock"


def test_ray_tables_become_deployments_and_a_voice_folder_table_covers_its_voices(tmp_path) -> None:
    for name in ("alice.pth", "bob.pth"):
        (tmp_path / name).write_bytes(b"")
    raw = {
        "models": {"tone": {"backend": "synth"}, "voices": {"backend": "rvc", "folder": str(tmp_path), "hubert": "/h.pt"},
                   "other": {"backend": "synth"}},
        "ray": {"address": "auto", "models": {"tone": {"num_replicas": 3, "num_gpus": 0.5},
                                              "voices": {"min_replicas": 1, "max_replicas": 4}}},
    }
    ray = parse_config(raw, address=ADDRESS).ray
    assert ray.address == "auto"
    assert ray.deployment("tone") == RayDeployment(num_replicas=3, num_gpus=0.5)
    assert ray.deployment("voices/alice") == ray.deployment("voices/bob") == RayDeployment(min_replicas=1, max_replicas=4)
    assert ray.deployment("other") == RayDeployment()  # no table: one replica, default resources


def test_serve_ray_flag_wins_over_the_catalog_and_an_empty_one_means_local(tmp_path) -> None:
    catalog = tmp_path / "c.toml"
    catalog.write_text('[models.x]\nbackend = "synth"\n[ray]\naddress = "head:6379"\n')
    assert load_config(str(catalog), address=ADDRESS).ray.address == "head:6379"
    assert load_config(str(catalog), address=ADDRESS, ray="auto").ray.address == "auto"
    assert load_config(str(catalog), address=ADDRESS, ray="").ray.address is None
    with pytest.raises(ConfigError, match="through Ray Client .ray://. Serve cannot stream replies"):
        load_config(str(catalog), address=ADDRESS, ray="ray://head:10001")
    plain = tmp_path / "p.toml"
    plain.write_text('[models.x]\nbackend = "synth"\n')
    assert load_config(str(plain), address=ADDRESS).ray is None


@pytest.mark.parametrize("table, needle", [
    ({"num_replicas": 0}, "num_replicas must be a whole number from 1"),
    ({"min_replicas": 2}, "needs both min_replicas and max_replicas"),
    ({"min_replicas": 3, "max_replicas": 2}, "min_replicas <= max_replicas"),
    ({"num_gpus": -1}, "num_gpus must be a number of gpus"),
    ({"replicas": 2}, "unknown keys ['replicas']"),
    ({"target_ongoing_requests": 0}, "target_ongoing_requests must be a positive number"),
])
def test_bad_ray_tables_name_the_key(table, needle) -> None:
    with pytest.raises(ConfigError) as err:
        parse_config({"models": {"x": {"backend": "synth"}}, "ray": {"models": {"x": table}}}, address=ADDRESS)
    assert needle in str(err.value) and "[ray.models.x]" in str(err.value)


def test_deployment_options_default_to_a_gpu_for_cuda_models_and_a_cpu_otherwise() -> None:
    gpu = deployment_options(ModelSpec("m", "musicgen", device="cuda"), RayDeployment(), cluster_gpus=0, rows=8)
    assert gpu["ray_actor_options"] == {"num_gpus": 1.0, "num_cpus": 0.0}
    assert gpu["num_replicas"] == 1 and gpu["max_ongoing_requests"] == 16  # room for a full batch and the next
    auto = deployment_options(ModelSpec("m", "synth"), RayDeployment(), cluster_gpus=2)
    assert auto["ray_actor_options"]["num_gpus"] == 1.0  # device unset, and the cluster has GPUs
    cpu = deployment_options(ModelSpec("m", "synth"), RayDeployment(num_cpus=0.5), cluster_gpus=0)
    assert cpu["ray_actor_options"] == {"num_gpus": 0.0, "num_cpus": 0.5} and cpu["max_ongoing_requests"] == 4
    scaled = deployment_options(ModelSpec("m", "synth"), RayDeployment(min_replicas=0, max_replicas=3), cluster_gpus=0)
    assert "num_replicas" not in scaled
    assert scaled["autoscaling_config"] == {"min_replicas": 0, "max_replicas": 3, "target_ongoing_requests": 2.0}


def test_a_replica_on_half_a_gpu_budgets_half_of_it() -> None:
    assert replica_budgets({}, {"num_gpus": 0.5}) == {"cuda": 0.45}
    assert replica_budgets({"cuda": 0.8, "cpu": "x"}, {"num_gpus": 0.25}) == {"cuda": 0.2, "cpu": "x"}
    assert replica_budgets({"cuda": 8 * 2**30}, {"num_gpus": 0.5}) == {"cuda": 8 * 2**30}  # bytes: as written
    assert replica_budgets({}, {"num_gpus": 1.0}) == {}


def test_names_fingerprints_and_the_replica_config() -> None:
    assert app_name("musicgen") == "modelhost-musicgen"
    assert app_name("voices/alice").startswith("modelhost-voices_alice-") and app_name("voices/alice") != app_name("voices_alice")
    host = parse_config({"models": {"m": {"backend": "synth", "width": 64}, "n": {"backend": "synth"}}, "ray": {}},
                        address=ADDRESS)
    replica = replica_config(host.models["m"], host, {"cuda": 0.45})
    assert list(replica.models) == ["m"] and replica.preload == ("m",) and replica.ray is None
    assert replica.token is None and replica.curve is None and replica.budgets == {"cuda": 0.45}
    options = deployment_options(host.models["m"], RayDeployment(), 0)
    assert fingerprint(replica, options) == fingerprint(replica_config(host.models["m"], host, {"cuda": 0.45}), dict(options))
    wider = parse_config({"models": {"m": {"backend": "synth", "width": 96}}, "ray": {}}, address=ADDRESS)
    assert fingerprint(replica, options) != fingerprint(replica_config(wider.models["m"], wider, {"cuda": 0.45}), options)
    slower = parse_config({"host": {"stall_after_s": 300}, "models": {"m": {"backend": "synth", "width": 64}}, "ray": {}},
                          address=ADDRESS)  # a host setting the replica runs on counts too
    assert fingerprint(replica, options) != fingerprint(replica_config(slower.models["m"], slower, {"cuda": 0.45}), options)
    assert fingerprint(replica, options) != fingerprint(replica, {**options, "num_replicas": 2})
