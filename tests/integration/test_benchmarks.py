"""Smoke runs of the benchmarks (tiny repetitions) so they cannot rot; the figures live in benchmarks/README.md."""

from __future__ import annotations

import json
import os
import subprocess
import sys

import pytest

from tests.support.launch import ROOT


def _run(module: str, *args: str, tmp_path) -> dict:
    out = tmp_path / f"{module}.json"
    done = subprocess.run([sys.executable, "-m", f"benchmarks.{module}", *args, "--json", str(out)],
                          cwd=ROOT, capture_output=True, text=True, timeout=300, env={**os.environ})
    assert done.returncode == 0, done.stderr
    assert any(line.startswith("machine: ") for line in done.stdout.splitlines())
    return json.loads(out.read_text())


def test_roundtrip_benchmark_smoke(tmp_path) -> None:
    report = _run("roundtrip", "--reps", "3", tmp_path=tmp_path)
    results = report["results"]
    assert report["machine"]["cores"] >= 1
    for case in ("small", "10s_stereo"):
        assert results[case]["host_p50_ms"] > 0 and results[case]["in_process_p50_ms"] > 0
        assert results[case]["ratio_p50"] > 0


def test_wire_threshold_benchmark_smoke(tmp_path) -> None:
    report = _run("wire_threshold", "--reps", "3", tmp_path=tmp_path)
    sizes = [row["bytes"] for row in report["median_round_trip"]]
    assert sizes == sorted(sizes) and all(row["frame_us"] > 0 for row in report["median_round_trip"])


def test_backends_benchmark_smoke(tmp_path) -> None:
    report = _run("backends", "--reps", "2", tmp_path=tmp_path)
    assert report["hubert"]["holders"] == 2 and report["hubert"]["saved_bytes"] > 0
    assert set(report["memory_bytes"]) == {"musicgen", "audiogen", "voices/a", "voices/b"}
    for name in ("musicgen_1s", "rvc_1s"):
        assert report["requests"][name]["host_p50_ms"] > 0 and report["requests"][name]["in_process_p50_ms"] > 0


def test_swap_benchmark_smoke(tmp_path) -> None:
    import torch

    report = _run("swap", "--reps", "1", tmp_path=tmp_path)
    if torch.cuda.is_available():
        assert report["swap_in_p50_ms"] > 0 and report["cold_load_p50_ms"] > 0
    else:
        assert report["skipped"] == "no CUDA device"


def test_warm_start_benchmark_smoke(tmp_path, monkeypatch) -> None:
    monkeypatch.setenv("MODELHOST_CACHE_DIR", str(tmp_path / "cache"))
    report = _run("warm_start", "--size", "tiny", "--reps", "1", tmp_path=tmp_path)
    for family in ("musicgen", "rvc"):
        r = report["results"][family]
        for way in ("in_process", "through_host"):
            phases = r[way]
            assert phases["total_s"]["median"] >= phases["generate_s"]["median"] > 0
        assert r["ratio_total_median"] > 0


def test_clients_benchmark_smoke(tmp_path) -> None:
    report = _run("clients", "--reps", "3", tmp_path=tmp_path)
    assert [r["clients"] for r in report["rounds"]] == [1, 4, 16]
    for r in report["rounds"]:
        assert r["requests"] == 3 * r["clients"] and r["throughput_rps"] > 0 and r["p99_ms"] >= r["p50_ms"] > 0


def test_ipc_benchmark_smoke(tmp_path) -> None:
    report = _run("ipc", "--reps", "3", "--payloads", "empty,1s_16k_mono,10s_result,30s_44k_stereo", tmp_path=tmp_path)
    assert set(report["payloads"]) == {"empty", "1s_16k_mono", "10s_result", "30s_44k_stereo"}  # 5 min: the full run's
    big = report["payloads"]["30s_44k_stereo"]
    assert big["bytes_in"] == big["bytes_out"] == 30 * 44100 * 2 * 4
    assert report["payloads"]["10s_result"]["bytes_out"] == 10 * 32000 * 2 * 4
    assert report["payloads"]["10s_result"]["raw_zmq_one_way_p50_ms"] > 0
    for name, row in report["payloads"].items():
        assert row["shm_p50_ms"] > 0 and row["frames_p50_ms"] > 0 and row["raw_zmq_p50_ms"] > 0
        assert row["raw_zmq_2proc_p50_ms"] > 0
        assert name == "empty" or row["memcpy_p50_ms"] > 0
        assert name == "10s_result" or row["gradio_p50_ms"] > 0  # ./setup.sh --test installs the Gradio reference
    assert big["shm_faults_client"] < 100  # of 2,600 pages: shared memory's segments are pre-faulted and reused (vs frames: the 5-min run)
    small = report["small_call"]
    assert small["direct_p50_ms"] > 0 and small["io_thread_p50_ms"] > 0 and small["raw_zmq_2proc_p50_ms"] > 0
    assert set(small["host_cpu_us_per_call"]) == {"direct", "io_thread"}


def test_light_ui_benchmark_smoke(tmp_path) -> None:
    if not (ROOT / ".venv-py310" / "bin" / "python").exists():
        import pytest

        pytest.skip("no .venv-py310 (Gradio on Python 3.10): the README's test command creates it")
    report = _run("light_ui", "--size", "tiny", "--reps", "1", tmp_path=tmp_path)
    assert report["light_ui"]["total_s"] > report["light_ui"]["ui_ready_s"] > 0
    assert report["in_process"]["total_s"] > 0 and report["ratio"] > 0


def test_stream_benchmark_smoke(tmp_path) -> None:
    report = _run("stream", "--size", "tiny", "--reps", "1", "--durations", "2", "--interval", "0.5", tmp_path=tmp_path)
    r = report["results"]["2s"]
    assert r["chunks"] >= 2
    assert 0 < r["stream_first_s"] < r["stream_whole_s"]
    assert r["first_over_whole"] > 0 and r["stream_cost"] > 0


def test_batching_benchmark_smoke(tmp_path) -> None:
    report = _run("batching", "--size", "tiny", "--reps", "1", "--concurrency", "1,2", "--duration", "0.5",
                  tmp_path=tmp_path)
    r = report["results"]["2"]
    assert r["single"]["batch_rows_seen"] == [1]  # max_batch_size = 1: one at a time
    assert r["batched"]["throughput_audio_s_per_s"] > 0 and r["batched_over_single"] > 0
    assert r["batched"]["latency_p50_s"] > 0 and r["single"]["scaling"] > 0


def test_ray_scale_benchmark_smoke(tmp_path) -> None:
    pytest.importorskip("ray.serve", reason="needs Ray Serve: pip install 'modelhost[ray]'")
    report = _run("ray_scale", "--reps", "1", "--concurrency", "1,2", "--requests", "1", "--duration", "0.2",
                  "--small-calls", "5", tmp_path=tmp_path)
    for r in report["results"].values():
        assert r["direct"]["requests_per_s"] > 0 and r["one"]["requests_per_s"] > 0 and r["two"]["requests_per_s"] > 0
    assert report["small_call"]["ray"]["p50_ms"] > 0 and report["small_call"]["direct"]["p50_ms"] > 0


def test_runners_benchmark_smoke(tmp_path) -> None:
    report = _run("runners", "--reps", "10", "--results", "2", "--stream", "1", tmp_path=tmp_path)
    for key in ("small_call", "2s_result"):
        for path in ("runner", "inline"):
            assert report[key][path]["wall_p50_ms"] > 0 and report[key][path]["calls"] >= 5
    assert report["cold_load_s"]["runner"] > report["cold_load_s"]["inline"]  # a process to start, libraries to import
    assert report["stream_first_audio"]["runner"]["first_chunk_s"] > 0 and report["batch"]["runner"]["max_rows"] >= 1
    assert report["shared_memory"] and report["handed_over_without_copy"] > 0  # 2 s of stereo: over the shm threshold
