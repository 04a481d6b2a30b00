"""The core's decisions in one thread, with fake workers and a fake clock (no sockets, no processes, no sleeps):
the command each event leads to, evictions before a load, the batch window, the out-of-memory retry, a runner's
death mid-run, the kill timer of a run that ignores its stop, and exactly one final reply each."""

from __future__ import annotations

from typing import Any

from modelhost.client.protocol import wire
from modelhost.client.protocol.errors import OutOfMemoryError
from modelhost.host.backends import MemoryReport
from modelhost.host.commands import Command, Report, Row
from modelhost.host.config import parse_config
from modelhost.host.core import Core
from modelhost.host.runners import RunnerExit

MIB = 2**20
PEER = b"client"


class FakeWorker:
    def __init__(self, name: str) -> None:
        self.name, self.progress_at = name, {}
        self.commands: list[Command] = []
        self.stops: list[tuple] = []

    def start(self) -> None:
        pass

    def send(self, command: Command) -> None:
        self.commands.append(command)

    def stop(self, key: tuple, reason: str) -> None:
        self.stops.append((key, reason))

    def join(self, timeout_s: float) -> None:
        pass


class FakeRunners:
    """What the core asks of ``host.runners.Runners``, recorded."""

    status: dict[str, Any] = {}

    def __init__(self) -> None:
        self.workers: dict[str, FakeWorker] = {}
        self.retired: list[str] = []
        self.killed: list[tuple[str, str]] = []

    def add(self, spec, backend) -> FakeWorker:
        return self.workers.setdefault(spec.name, FakeWorker(spec.name))

    def start(self) -> None:
        pass

    def retire(self, runner: str) -> None:
        self.retired.append(runner)

    def kill(self, runner: str, why: str) -> None:
        self.killed.append((runner, why))

    def shutdown(self, timeout_s: float) -> None:
        pass


class Rig:
    """A core on a catalog, its fake workers, the replies it sent, and a clock the test moves."""

    def __init__(self, models: dict[str, dict], budget_mib: int = 1000) -> None:
        self.now = 100.0
        self.replies: list[tuple[str, int, dict]] = []
        self.runners = FakeRunners()
        config = parse_config({"models": models, "budget": {"cpu": budget_mib * MIB}})
        self.core = Core(config, lambda peer, kind, rid, body: self.replies.append((kind, rid, body)),
                         runners=self.runners, clock=lambda: self.now)
        self.ids = iter(range(1, 1000))

    def worker(self, model: str) -> FakeWorker:
        return self.runners.workers[model]

    def generate(self, model: str, **params) -> int:
        rid = next(self.ids)
        self.core.post(PEER, wire.Message("generate", rid, {"model": model, "params": params}), int(self.now * 1e9))
        self.core.turn()
        return rid

    def last(self, model: str) -> Command:
        return self.worker(model).commands[-1]

    def answer(self, model: str, ok: bool = True, rows: list[Row] | None = None, **fields) -> None:
        """The worker's report on its last command."""
        command = self.last(model)
        report = Report(model, command, ok, rows=rows or [], **fields)
        if command.op == "load" and ok:
            report.report = MemoryReport(self.core.rows[model]["estimate_bytes"])
        self.core.report(report)
        self.core.turn()

    def ran(self, model: str) -> None:
        """The last run command finished well, every row."""
        command = self.last(model)
        assert command.op == "run"
        self.answer(model, rows=[Row(t.key, True, body={"audio": None, "n": t.request_id}) for t in command.tasks])

    def finals(self, rid: int) -> list[tuple[str, dict]]:
        return [(kind, body) for kind, r, body in self.replies if r == rid and kind in wire.FINAL_REPLY_KINDS]


def synth(mib: int, **more) -> dict:
    return {"backend": "synth", "width": 8, "memory": f"{mib}MiB", **more}


def test_a_request_loads_its_model_then_runs_and_gets_exactly_one_reply() -> None:
    rig = Rig({"a": synth(60)})
    rid = rig.generate("a", duration_s=0.1)
    assert [c.op for c in rig.worker("a").commands] == ["load"] and rig.finals(rid) == []
    rig.answer("a")
    run = rig.last("a")
    assert run.op == "run" and [t.request_id for t in run.tasks] == [rid]
    rig.ran("a")
    assert [kind for kind, _ in rig.finals(rid)] == ["result"]
    rig.core.turn()
    assert len(rig.finals(rid)) == 1 and rig.core.jobs == (0, 0)


def test_a_load_that_does_not_fit_waits_for_the_eviction_it_caused() -> None:
    rig = Rig({"a": synth(60), "b": synth(60)}, budget_mib=100)
    first = rig.generate("a")
    rig.answer("a")
    rig.ran("a")
    rig.now += 1
    second = rig.generate("b")
    assert rig.last("a").op == "unload" and rig.worker("b").commands == []  # a goes first; b is not loaded beside it
    rig.answer("a")
    assert rig.last("b").op == "load"
    assert rig.core.rows["a"]["state"] == "unloaded" and rig.runners.retired == []  # b's load keeps their runner
    rig.answer("b")
    rig.ran("b")
    assert [k for k, _ in rig.finals(first)] == ["result"] and [k for k, _ in rig.finals(second)] == ["result"]


def test_a_lone_request_waits_the_batch_window_for_company_and_then_runs_with_it() -> None:
    rig = Rig({"m": {"backend": "musicgen", "checkpoint": "facebook/musicgen-small", "memory": "10MiB",
                     "max_batch_size": 4, "batch_window_ms": 50}})
    rig.core.post(PEER, wire.Message("load", 900, {"model": "m"}), int(rig.now * 1e9))
    rig.core.turn()
    rig.answer("m")
    first = rig.generate("m", duration=1.0)
    assert rig.last("m").op == "load"  # no run yet: it waits up to 50 ms for company
    rig.now += 0.02
    second = rig.generate("m", duration=1.0)
    assert rig.last("m").op == "load"
    rig.now += 0.04  # 60 ms after the first arrived: the window is over
    rig.core.turn()
    run = rig.last("m")
    assert run.op == "run" and [t.request_id for t in run.tasks] == [first, second]


def test_out_of_memory_evicts_the_idle_models_and_retries_once_then_says_so() -> None:
    rig = Rig({"a": synth(10), "b": synth(10)})
    rig.generate("b")
    rig.answer("b")
    rig.ran("b")
    rid = rig.generate("a")
    rig.answer("a")
    task = rig.last("a").tasks[0]
    oom = OutOfMemoryError("model 'a' ran out of device memory")
    rig.answer("a", ok=False, rows=[Row(task.key, False, oom=True, error=oom)])
    assert rig.last("b").op == "unload" and rig.finals(rid) == []  # room is made, the request waits for it
    rig.answer("b")
    assert rig.last("a").op == "run"  # its one retry
    rig.answer("a", ok=False, rows=[Row(task.key, False, oom=True, error=oom)])
    assert [(k, b["code"]) for k, b in rig.finals(rid)] == [("error", "out_of_memory")]


def test_a_runner_that_dies_mid_run_runs_the_request_once_more_then_reports_runner_lost() -> None:
    rig = Rig({"a": synth(10)})
    rid = rig.generate("a", seed=3)
    rig.answer("a")
    lost = rig.last("a")
    rig.core.report(RunnerExit("synth", 4242, "killed by signal SIGSEGV", False, 1, False, True, ("boom",), {"a": lost},
                               frozenset(), {}))
    rig.core.turn()
    assert rig.core.rows["a"]["state"] == "loading" and rig.last("a").op == "load"  # a new runner, the weights again
    rig.answer("a")
    again = rig.last("a")
    assert again.op == "run" and again.tasks[0].request_id == rid and rig.finals(rid) == []
    rig.core.report(RunnerExit("synth", 4243, "killed by signal SIGKILL", False, 2, False, True, (), {"a": again},
                               frozenset(), {}))
    rig.core.turn()
    (kind, body), = rig.finals(rid)
    assert kind == "error" and body["code"] == "runner_lost" and "SIGKILL" in body["message"]


def test_a_stopped_run_that_goes_on_past_kill_after_s_gets_its_runner_killed() -> None:
    rig = Rig({"a": synth(10, kill_after_s=5)})
    rid = rig.generate("a")
    rig.answer("a")
    rig.core.post(PEER, wire.Message("cancel", 77, {"target": rid}), int(rig.now * 1e9))
    rig.core.turn()
    assert rig.worker("a").stops == [((PEER, rid), "cancelled")] and rig.runners.killed == []
    rig.now += 4.9
    rig.core.turn()
    assert rig.runners.killed == []
    rig.now += 0.2
    rig.core.turn()
    assert rig.runners.killed and rig.runners.killed[0][0] == "synth" and "kill_after_s" in rig.runners.killed[0][1]


def test_the_last_unload_in_a_runner_tells_it_to_exit_and_not_before() -> None:
    rig = Rig({"a": synth(10), "b": synth(10)})
    for model in ("a", "b"):
        rig.generate(model)
        rig.answer(model)
        rig.ran(model)
    for rid, model in ((501, "a"), (502, "b")):
        rig.core.post(PEER, wire.Message("unload", rid, {"model": model}), int(rig.now * 1e9))
        rig.core.turn()
        rig.answer(model)
        assert [k for k, _ in rig.finals(rid)] == ["result"]
        assert rig.runners.retired == ([] if model == "a" else ["synth"])  # b still held the runner after a went


def test_a_crash_in_one_models_code_loads_its_runner_mates_again() -> None:
    rig = Rig({"a": synth(10), "b": synth(10)})
    for model in ("a", "b"):
        rig.generate(model)
        rig.answer(model)
        rig.ran(model)
    rid = rig.generate("a")
    lost = rig.last("a")
    rig.core.report(RunnerExit("synth", 4242, "killed by signal SIGSEGV", False, 1, False, True, (), {"a": lost},
                               frozenset(), {}))
    rig.core.turn()
    assert rig.last("a").op == "load" and rig.last("b").op == "load"  # a for its request, b because it was resident
    rig.answer("b")
    assert rig.core.rows["b"]["state"] == "ready" and rig.finals(rid) == []
