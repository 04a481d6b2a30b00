"""``synth``: a small real torch model that turns a prompt (and a seed) into audio.

A TEST AND BENCHMARK BACKEND, not a music model: it exists so the host, the clients, the tests and
the benchmarks exercise real torch modules, real checkpoint files and real device placement at any
size, without downloading weights. Its parameter count is configurable (``parameters`` or
``width``/``depth``), so a test can make a 50 kB model and a benchmark a 1 GB one.

The network: prompt bytes are embedded and averaged into a conditioning vector; a recurrent state
goes through ``depth`` tanh(Linear) layers per step, and each step emits ``hop`` samples per
channel. With an input ``audio`` (audio-to-audio, like a voice model), the output follows the
input's length and sample rate and mixes it with the synthesized signal.

Catalog options: ``checkpoint`` (a file written by ``save_checkpoint``; it defines the
architecture), or ``width`` / ``depth`` / ``parameters`` / ``hop`` / ``channels`` /
``sample_rate`` / ``init_seed`` for random weights; ``max_duration_s``.
Generate params: ``duration_s`` (default 1.0, or the input's length), ``seed`` (-1 or 0: random,
otherwise fixed; the seed used is returned in ``info``).
"""

from __future__ import annotations

import math
import secrets
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn

from modelhost.client.protocol.errors import BadParamsError, LoadFailedError
from modelhost.host.backends import Backend, GenerateOutput, GenerateRequest, ModelSpec, RunContext, check_options
from modelhost.host.backends.params import audio_input, check_known
from modelhost.host.devices import module_bytes, offload_module, restore_module

FORMAT = "modelhost-synth-v1"
VOCAB = 256
ARCH_KEYS = ("width", "depth", "hop", "channels", "sample_rate")
DEFAULTS: dict[str, int] = {"width": 256, "depth": 2, "hop": 320, "channels": 1, "sample_rate": 32000}
_OPTION_KEYS = {*ARCH_KEYS, "parameters", "checkpoint", "init_seed", "max_duration_s"}
_PARAM_KEYS = {"duration_s", "seed"}


class SynthNet(nn.Module):
    """The synth network; ``parameter_count(config)`` predicts its size."""

    def __init__(self, width: int, depth: int, hop: int, channels: int, sample_rate: int) -> None:
        super().__init__()
        self.config = {"width": width, "depth": depth, "hop": hop, "channels": channels, "sample_rate": sample_rate}
        self.embed = nn.Embedding(VOCAB, width)
        self.layers = nn.ModuleList(nn.Linear(width, width) for _ in range(depth))
        self.out = nn.Linear(width, hop * channels)
        self.mix = nn.Parameter(torch.tensor([0.8, 0.2]))

    def condition(self, prompt: str | None, device: torch.device) -> torch.Tensor:
        data = (prompt or "").encode("utf-8")[:4096] or b"\0"
        ids = torch.tensor(list(data), dtype=torch.long, device=device)
        return self.embed(ids).mean(dim=0)

    def step(self, state: torch.Tensor, cond: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        for layer in self.layers:
            state = torch.tanh(layer(state) + cond)
        return state, torch.tanh(self.out(state))


def parameter_count(width: int, depth: int, hop: int, channels: int) -> int:
    return VOCAB * width + depth * (width * width + width) + width * hop * channels + hop * channels + 2


def width_for(parameters: int, depth: int, hop: int, channels: int) -> int:
    """The width whose network has about ``parameters`` parameters."""
    a, b = depth, VOCAB + depth + hop * channels
    c = hop * channels + 2 - parameters
    return max(1, round((-b + math.sqrt(b * b - 4 * a * c)) / (2 * a))) if a else max(1, -c // b)


def build(config: dict[str, int], init_seed: int = 0) -> SynthNet:
    """A synth network with seeded random weights."""
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(init_seed)
        return SynthNet(**config)


def save_checkpoint(path: str | Path, config: dict[str, int], init_seed: int = 0) -> Path:
    """Write a random-weight synth checkpoint (what a trained one would look like) to ``path``."""
    net = build({**DEFAULTS, **config}, init_seed)
    path = Path(path)
    torch.save({"format": FORMAT, "config": net.config, "state_dict": net.state_dict()}, path)
    return path


class SynthBackend(Backend):
    """The ``synth`` backend (see the module docstring)."""

    can_offload = True
    requires = ("torch",)

    def __init__(self, spec: ModelSpec) -> None:
        super().__init__(spec)
        opts = check_options(spec, _OPTION_KEYS)
        self.checkpoint = opts.pop("checkpoint", None)
        self.init_seed = int(opts.pop("init_seed", 0))
        self.max_duration_s = float(opts.pop("max_duration_s", 600.0))
        if self.checkpoint is not None and set(opts) & {*ARCH_KEYS, "parameters"}:
            raise ValueError(f"[models.{spec.name}]: the checkpoint defines the architecture; remove {sorted(opts)}")
        for key, value in opts.items():
            if isinstance(value, bool) or not isinstance(value, int) or value <= 0:
                raise ValueError(f"[models.{spec.name}]: {key} must be a positive integer, got {value!r}")
        config = {**DEFAULTS, **{k: v for k, v in opts.items() if k in ARCH_KEYS}}
        if "parameters" in opts:
            if "width" in opts:
                raise ValueError(f"[models.{spec.name}]: give width or parameters, not both")
            config["width"] = width_for(opts["parameters"], config["depth"], config["hop"], config["channels"])
        self.config = config
        self.net: SynthNet | None = None
        self.device = torch.device("cpu")

    def source(self) -> dict[str, Any]:
        return {"checkpoint": self.checkpoint}

    def load(self, device: str) -> None:
        self.device = torch.device(device)
        if self.checkpoint is None:
            net = build(self.config, self.init_seed)
        else:
            net = self._read_checkpoint(Path(self.checkpoint))
        self.net = net.to(self.device).eval()

    def _read_checkpoint(self, path: Path) -> SynthNet:
        if not path.is_file():
            raise LoadFailedError(f"model {self.name!r}: checkpoint {path} does not exist; fix `checkpoint` in the catalog")
        try:
            blob = torch.load(path, map_location="cpu", weights_only=True)
        except Exception as exc:
            raise LoadFailedError(f"model {self.name!r}: {path} is not a readable torch checkpoint: {exc}") from None
        if not isinstance(blob, dict) or blob.get("format") != FORMAT:
            raise LoadFailedError(f"model {self.name!r}: {path} is not a synth checkpoint (written by host.backends.synth.save_checkpoint)")
        self.config = {k: int(blob["config"][k]) for k in ARCH_KEYS}
        net = SynthNet(**self.config)
        net.load_state_dict(blob["state_dict"])
        return net

    def unload(self) -> None:
        self.net = None

    def offload(self) -> None:
        self.net = offload_module(self.net)

    def restore(self, device: str) -> None:
        self.device = torch.device(device)
        self.net = restore_module(self.net, device)

    def estimate_bytes(self) -> int:
        if self.checkpoint is not None and Path(self.checkpoint).is_file():
            return Path(self.checkpoint).stat().st_size
        return 4 * parameter_count(*(self.config[k] for k in ("width", "depth", "hop", "channels")))

    def warmup(self) -> None:
        self.generate(GenerateRequest("warm-up", {"duration_s": 0.05, "seed": 1}), RunContext.detached())

    def memory_bytes(self) -> int:
        return module_bytes(self.net) if self.net is not None else 0

    def generate(self, request: GenerateRequest, ctx: RunContext) -> GenerateOutput:
        net = self.net
        assert net is not None, "generate before load"
        duration_s, seed = self._check_params(request)
        sample_rate = request.sample_rate if request.audio is not None else self.config["sample_rate"]
        samples = max(1, round(duration_s * sample_rate))
        hop, channels = self.config["hop"], self.config["channels"]
        steps = math.ceil(samples / hop)
        generator = torch.Generator(device=self.device).manual_seed(seed)
        with torch.inference_mode():
            cond = net.condition(request.prompt, self.device)
            state = torch.randn(self.config["width"], generator=generator, device=self.device) * 0.5
            frames = []
            for i in range(steps):
                state, frame = net.step(state, cond)
                frames.append(frame)
                ctx.progress(i + 1, steps)
            audio = torch.stack(frames).reshape(steps, channels, hop).permute(1, 0, 2).reshape(channels, -1)[:, :samples]
            if request.audio is not None:
                audio = self._mix(net, audio, request.audio)
            out = audio.float().cpu().numpy()
        return GenerateOutput(audio=out, sample_rate=sample_rate, info={"seed": seed})

    def _mix(self, net: SynthNet, synth: torch.Tensor, audio: np.ndarray) -> torch.Tensor:
        x = torch.as_tensor(np.asarray(audio, dtype=np.float32), device=self.device)
        x = x.reshape(1, -1) if x.ndim == 1 else x.reshape(x.shape[0], -1)
        return torch.tanh(net.mix[0] * x + net.mix[1] * synth.mean(dim=0, keepdim=True))

    def _check_params(self, request: GenerateRequest) -> tuple[float, int]:
        params = request.params
        check_known(params, _PARAM_KEYS, "a synth model")
        if request.audio is not None:
            audio_input(request.audio, request.sample_rate)
            default_s = request.audio.shape[-1] / request.sample_rate
        else:
            default_s = 1.0
        duration_s = params.get("duration_s", default_s)
        if isinstance(duration_s, bool) or not isinstance(duration_s, (int, float)) or not 0 < duration_s <= self.max_duration_s:
            raise BadParamsError(f"duration_s must be a number of seconds in (0, {self.max_duration_s:g}], got {duration_s!r}")
        if request.audio is not None and "duration_s" in params:
            raise BadParamsError("duration_s cannot be set with input audio: the output follows the input's length")
        seed = params.get("seed", -1)
        if isinstance(seed, bool) or not isinstance(seed, int) or not -1 <= seed < 2**63:
            raise BadParamsError(f"seed must be an int (-1 or 0 for random), got {seed!r}")
        if seed in (-1, 0):
            seed = secrets.randbelow(2**31 - 1) + 1
        return float(duration_s), seed

