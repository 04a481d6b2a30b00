"""Memory admission decisions (host.admission), on models built from catalog entries, with no host around them:
what may load now, who leaves first, when a load waits, when it can never fit, and how many batch rows fit."""

from __future__ import annotations

from modelhost.host import admission
from modelhost.host.backends import MemoryReport, ModelSpec, create_backend
from modelhost.host.model import READY, UNLOADING, Model

MIB = 2**20


def _model(name: str, mib: int, *, pin: bool = False, activation_mib: int = 0) -> Model:
    spec = ModelSpec(name=name, backend="synth", options={"width": 8}, memory_bytes=mib * MIB, pin=pin,
                     activation_bytes_per_s=activation_mib * MIB)
    return Model(spec, create_backend(spec))


def _ready(model: Model, device: str = "cpu") -> Model:
    model.state, model.device, model.report = READY, device, MemoryReport(model.spec.memory_bytes)
    return model


def test_a_load_that_fits_goes_and_one_that_does_not_names_its_victim() -> None:
    a, b = _model("a", 60), _model("b", 60)
    assert admission.admit(a, a.estimate("cpu"), "cpu", 100 * MIB, [a, b], 0.0).verdict == "go"
    _ready(a)
    decision = admission.admit(b, b.estimate("cpu"), "cpu", 100 * MIB, [a, b], 10.0)
    assert (decision.verdict, decision.victims) == ("evict", ("a",))


def test_a_load_waits_for_busy_models_and_never_fits_past_pinned_ones() -> None:
    a, b = _ready(_model("a", 60)), _model("b", 60)
    a.command = "run"  # busy: not evictable now, but later
    assert admission.admit(b, b.estimate("cpu"), "cpu", 100 * MIB, [a, b], 0.0).verdict == "wait"
    a.command, a.pinned = None, True
    decision = admission.admit(b, b.estimate("cpu"), "cpu", 100 * MIB, [a, b], 0.0)
    assert decision.verdict == "never" and "a (60.0 MiB, pinned)" in decision.why


def test_batch_rows_fit_the_room_left_and_wait_only_for_other_runs() -> None:
    a = _ready(_model("a", 10, activation_mib=10))
    other = _ready(_model("other", 10))
    assert admission.rows_that_fit(a, 8, 1.0, 60 * MIB, [a, other]) == 4  # 40 MiB free, 10 MiB per second per row
    other.activation_reserved_bytes = 35 * MIB  # a run of the other model holds room
    assert admission.rows_that_fit(a, 8, 1.0, 60 * MIB, [a, other]) == 0  # wait for it
    other.activation_reserved_bytes = 0
    assert admission.rows_that_fit(a, 8, 10.0, 60 * MIB, [a, other]) == 1  # never fits: alone, when nothing else runs


def test_out_of_memory_frees_idle_unpinned_models_on_that_device_only() -> None:
    keep, idle, pinned, busy, elsewhere = (_ready(_model(n, 10)) for n in ("keep", "idle", "pinned", "busy", "gpu"))
    pinned.pinned, busy.command, elsewhere.device = True, "run", "cuda:0"
    models = [keep, idle, pinned, busy, elsewhere]
    assert admission.out_of_memory_victims("cpu", keep, models) == [idle]
    assert admission.warm_room(idle, 100 * MIB, models, 0.0) is None  # no warm tier for a CPU model
    assert not admission.evicting_on("cpu", models)
    idle.state = UNLOADING
    assert admission.evicting_on("cpu", models)
