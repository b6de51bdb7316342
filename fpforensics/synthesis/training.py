"""Training synthetic models to the minimum reconstruction residual eta (METHOD 1.2).

Each model learns to reconstruct random crops of real images and stops the first time its
batch loss is <= eta: its weights are snapshotted at that moment (the weights that produced the
loss), so the output stays close to the real image while keeping the architecture's artifacts.
The models are fully convolutional, so they may train on crops smaller than the 128x128 at
which they are used (``crop``; 64 is 3x cheaper per step on CPU); batch-norm statistics and
the eval loss are then measured at ``calib_crop``.

A model whose loss has stopped falling is finished too (``plateau_window`` > 0): the mean batch
loss of each window of that many steps is compared with the best earlier window, and a model
that improved by less than ``plateau_tol`` (relative) is converged. Its fingerprint will not
change with more steps, so training it further only burns the budget. Models that neither
reach eta nor converge within ``max_steps`` updates are kept too; all three are recorded
(``reached_eta``, and ``steps`` < ``max_steps`` without eta means converged).

Packing (many models trained as one) comes in two backends with identical results:

* ``grouped``: :class:`~fpforensics.synthesis.packed.PackedAutoencoder`, one grouped network; the
  GPU backend, where one model is far too small to fill the device and per-kernel overhead
  dominates.
* ``looped``: the models stay separate modules but share one batch, one loss, one backward pass
  and one (multi-tensor) Adam step; the CPU backend, because oneDNN's grouped-convolution
  kernels are 2-4x slower than plain ones on CPU, where arithmetic (not launch overhead) bounds
  the speed.

Models that reach eta leave their pack at once (parameters and Adam state of the others are
carried over exactly), so finished models cost nothing. The real-image batches depend only on
``(data_seed, step)``, never on which models share a pack, so a model trained alone and in any
pack sees the same data and ends with the same weights.

After training, batch-norm running statistics are re-estimated on a few fixed batches with the
final weights (cumulative average), because the moving averages of a model stopped after a few
dozen steps still remember their initial values; ``eval_loss`` is then the model's eval-mode
reconstruction loss on a held-out batch, the sanity check that eval-mode outputs stay close to
the input.
"""

from __future__ import annotations

import hashlib
import json
import time
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path

import torch
import torch.nn as nn

from fpforensics.defaults import DEFAULTS
from fpforensics.device import autocast, resolve_precision
from fpforensics.errors import InputError
from fpforensics.images.decode import LoadReport, iter_images, list_images
from fpforensics.images.real import prepare_photo, random_crops
from fpforensics.synthesis.architectures import GRID_VERSION, ArchitectureSpec, build_autoencoder
from fpforensics.synthesis.packed import PackedAutoencoder, select_models

BACKENDS = ("auto", "grouped", "looped")
LOSSES = ("l2", "l1")
MAX_SHORT_SIDE = 512  # real images larger than this are downscaled once (memory bound; not hit by 500px sets)
_CALIB_OFFSET = 1 << 40  # batch ids for BN re-estimation and eval loss, disjoint from training steps


@dataclass(frozen=True)
class TrainConfig:
    """Everything that decides a model's weights (checked on resume); pack size/device are not in it."""

    eta: float = float(DEFAULTS["synth_eta"])
    loss: str = "l2"
    max_steps: int = int(DEFAULTS["synth_max_steps"])
    batch_size: int = int(DEFAULTS["synth_batch_size"])
    lr: float = float(DEFAULTS["synth_lr"])
    data_seed: int = 0
    crop: int = int(DEFAULTS["crop_size"])
    width: int = int(DEFAULTS["synth_width"])
    calib_batches: int = 4
    calib_crop: int = int(DEFAULTS["crop_size"])
    plateau_window: int = 0  # 0: train to eta or max_steps only
    plateau_tol: float = 0.02
    grid_version: int = GRID_VERSION

    def validate(self) -> None:
        if not self.eta > 0:
            raise InputError(f"--eta must be positive (got {self.eta})")
        if self.loss not in LOSSES:
            raise InputError(f"--loss must be one of {', '.join(LOSSES)} (got '{self.loss}')")
        if self.max_steps < 1:
            raise InputError(f"--max-steps must be at least 1 (got {self.max_steps})")
        if self.batch_size < 1:
            raise InputError(f"--batch-size must be at least 1 (got {self.batch_size})")
        if not self.lr > 0:
            raise InputError(f"--lr must be positive (got {self.lr})")
        if self.crop % 4 or self.calib_crop % 4 or self.crop < 8:
            raise InputError(f"--crop must be a multiple of 4, at least 8 (got {self.crop})")
        if self.plateau_window < 0 or not 0 <= self.plateau_tol < 1:
            raise InputError("--plateau-window must be >= 0 and the plateau tolerance in [0, 1)")

    def to_dict(self) -> dict:
        return asdict(self)

    def to_json(self) -> str:
        return json.dumps(self.to_dict(), sort_keys=True)


@dataclass
class TrainedModel:
    """One finished model: its snapshotted weights (cpu) and how it got there."""

    spec: ArchitectureSpec
    seed: int
    state_dict: dict[str, torch.Tensor]
    final_loss: float
    steps: int
    reached_eta: bool
    eval_loss: float = float("nan")
    seconds: float = 0.0


@dataclass
class RealData:
    """Real images kept in memory (uint8) with a deterministic stream of random crops."""

    images: list[torch.Tensor]
    fingerprint: str
    paths: list[Path] = field(default_factory=list)
    skipped: list[tuple[Path, str]] = field(default_factory=list)
    _device_images: dict[str, list[torch.Tensor]] = field(default_factory=dict, repr=False)

    @classmethod
    def from_folder(cls, inputs: str | Path | Sequence[str | Path], crop: int = int(DEFAULTS["crop_size"]),
                    on_skip: Callable[[Path, str], None] | None = None) -> RealData:
        """Load every readable image; fail (InputError) before any training if none is readable."""
        paths = list_images(inputs)
        report = LoadReport()
        images, digests, kept = [], [], []
        for path, img in iter_images(paths, report, on_skip):
            digests.append(hashlib.sha256(Path(path).read_bytes()).hexdigest())
            images.append(prepare_photo(img, crop, MAX_SHORT_SIDE))
            kept.append(path)
        if not images:
            names = inputs if isinstance(inputs, str | Path) else ", ".join(str(i) for i in inputs)
            raise InputError(f"{names}: no readable real image ({len(report.skipped)} unreadable files)")
        h = hashlib.sha256()
        for d in sorted(digests):
            h.update(d.encode())
        h.update(f"crop={crop};max_short_side={MAX_SHORT_SIDE}".encode())
        return cls(images=images, fingerprint=h.hexdigest()[:16], paths=kept, skipped=report.skipped)

    @classmethod
    def from_tensors(cls, images: Sequence[torch.Tensor], crop: int = int(DEFAULTS["crop_size"])) -> RealData:
        """From in-memory ``(3, H, W)`` images in [0, 1] (tests, notebooks)."""
        prepared = [prepare_photo(im, crop, MAX_SHORT_SIDE) for im in images]
        h = hashlib.sha256()
        for im in prepared:
            h.update(hashlib.sha256(im.numpy().tobytes()).hexdigest().encode())
        return cls(images=prepared, fingerprint=h.hexdigest()[:16])

    def batch(self, step: int, batch_size: int, crop: int, device: torch.device) -> torch.Tensor:
        """Batch number ``step``: ``(B, 3, crop, crop)`` float in [0, 1], a function of (data_seed, step) only."""
        gen = torch.Generator().manual_seed(step)
        key = str(device)
        if key not in self._device_images:
            self._device_images[key] = [im.to(device) for im in self.images]
        imgs = self._device_images[key]
        picks = torch.randint(len(imgs), (batch_size,), generator=gen).tolist()
        return random_crops(imgs, picks, crop, gen).float().div_(255.0)


def _stream_id(data_seed: int, step: int) -> int:
    return (data_seed * 1_000_003 + step) % (1 << 62)


def resolve_backend(backend: str, device: torch.device) -> str:
    if backend not in BACKENDS:
        raise InputError(f"--backend must be one of {', '.join(BACKENDS)} (got '{backend}')")
    if backend == "auto":
        return "grouped" if device.type == "cuda" else "looped"
    return backend


def _per_model_loss(y: torch.Tensor, x: torch.Tensor, kind: str) -> torch.Tensor:
    """``y`` (B, M, 3, H, W), ``x`` (B, 3, H, W) -> (M,) mean loss per model."""
    diff = y - x.unsqueeze(1)
    return (diff.abs() if kind == "l1" else diff.square()).mean(dim=(0, 2, 3, 4))


class _Pack:
    """Common interface of the two backends: per-model losses, snapshots, dropping models."""

    m: int

    def losses(self, x: torch.Tensor, kind: str) -> torch.Tensor:
        raise NotImplementedError

    def snapshot(self, i: int) -> dict[str, torch.Tensor]:
        raise NotImplementedError

    def keep(self, keep: list[int]) -> None:
        raise NotImplementedError


class _LoopedPack(_Pack):
    def __init__(self, spec: ArchitectureSpec, seeds: Sequence[int], cfg: TrainConfig, device: torch.device,
                 channels_last: bool) -> None:
        self.models = [_to(build_autoencoder(spec, s, cfg.width), device, channels_last).train() for s in seeds]
        self.m = len(self.models)
        self.lr = cfg.lr
        self.opt = torch.optim.Adam([p for mod in self.models for p in mod.parameters()], lr=cfg.lr)

    def losses(self, x: torch.Tensor, kind: str) -> torch.Tensor:
        outs = []
        for mod in self.models:
            d = mod(x).float() - x
            outs.append((d.abs() if kind == "l1" else d.square()).mean())
        return torch.stack(outs)

    def snapshot(self, i: int) -> dict[str, torch.Tensor]:
        return {k: v.detach().to("cpu", copy=True).contiguous() for k, v in self.models[i].state_dict().items()}

    def keep(self, keep: list[int]) -> None:
        old = self.opt
        self.models = [self.models[i] for i in keep]
        self.m = len(self.models)
        params = [p for mod in self.models for p in mod.parameters()]
        self.opt = torch.optim.Adam(params, lr=self.lr)
        for p in params:
            if p in old.state:
                self.opt.state[p] = old.state[p]


class _GroupedPack(_Pack):
    def __init__(self, spec: ArchitectureSpec, seeds: Sequence[int], cfg: TrainConfig, device: torch.device,
                 channels_last: bool) -> None:
        self.spec, self.width, self.lr, self.device, self.cl = spec, cfg.width, cfg.lr, device, channels_last
        self.module = _to(PackedAutoencoder.from_seeds(spec, seeds, cfg.width), device, channels_last).train()
        self.m = len(seeds)
        self.opt = torch.optim.Adam(self.module.parameters(), lr=cfg.lr)

    def losses(self, x: torch.Tensor, kind: str) -> torch.Tensor:
        return _per_model_loss(self.module(x).float(), x, kind)

    def snapshot(self, i: int) -> dict[str, torch.Tensor]:
        out = {}
        for k, v in self.module.state_dict().items():
            t = v if (k.endswith("num_batches_tracked") or v.dim() == 0) else v.chunk(self.m, dim=0)[i]
            out[k] = t.detach().to("cpu", copy=True).contiguous()
        return out

    def keep(self, keep: list[int]) -> None:
        old_module, old_opt, m = self.module, self.opt, self.m
        new = PackedAutoencoder(self.spec, len(keep), self.width)
        new.load_state_dict({k: select_models(k, v, m, keep) for k, v in old_module.state_dict().items()})
        new = _to(new, self.device, self.cl).train()
        opt = torch.optim.Adam(new.parameters(), lr=self.lr)
        old_params = dict(old_module.named_parameters())
        for name, p in new.named_parameters():
            state = old_opt.state.get(old_params[name])
            if state:
                opt.state[p] = {k: (select_models(name, v, m, keep) if torch.is_tensor(v) and v.dim() > 0
                                    else (v.clone() if torch.is_tensor(v) else v)) for k, v in state.items()}
        self.module, self.opt, self.m = new, opt, len(keep)


def _to(module: nn.Module, device: torch.device, channels_last: bool) -> nn.Module:
    module = module.to(device)
    return module.to(memory_format=torch.channels_last) if channels_last else module


class _Plateau:
    """Per-model window means of the batch loss; a model is converged when a window fails to improve."""

    def __init__(self, n: int, window: int, tol: float) -> None:
        self.window, self.tol = window, tol
        self.sums = [0.0] * n
        self.best = [float("inf")] * n

    def update(self, values: list[float], step: int) -> list[bool]:
        """Add this step's losses; at the end of a window, True for the models that converged."""
        if self.window <= 0:
            return [False] * len(values)
        for j, v in enumerate(values):
            self.sums[j] += v
        if (step + 1) % self.window:
            return [False] * len(values)
        out = []
        for j in range(len(values)):
            mean = self.sums[j] / self.window
            out.append(mean > self.best[j] * (1 - self.tol))
            self.best[j] = min(self.best[j], mean)
            self.sums[j] = 0.0
        return out

    def keep(self, keep: list[int]) -> None:
        self.sums = [self.sums[j] for j in keep]
        self.best = [self.best[j] for j in keep]


def train_pack(
    spec: ArchitectureSpec, seeds: Sequence[int], data: RealData, cfg: TrainConfig,
    device: torch.device | str = "cpu", backend: str = "auto", channels_last: bool | None = None,
    on_model: Callable[[TrainedModel], None] | None = None, precision: str = "auto",
) -> list[TrainedModel]:
    """Train the models ``(spec, seed)`` for ``seeds`` together; returned in ``seeds`` order.

    Every model stops (and is snapshotted) the first step its batch loss is <= ``cfg.eta``, or
    when its loss has converged (``cfg.plateau_window``); the pack shrinks as models finish.
    ``channels_last`` (default: on CPU) is a memory layout only, 1.4-1.7x faster for oneDNN
    convolutions. ``precision`` ``auto`` uses bf16 autocast only where the hardware runs it
    natively (:func:`fpforensics.device.bf16_is_fast`).
    """
    device = torch.device(device)
    backend = resolve_backend(backend, device)
    precision = resolve_precision(precision, device)
    if channels_last is None:
        channels_last = device.type == "cpu"
    seeds = list(seeds)
    t0 = time.perf_counter()
    pack: _Pack = (_GroupedPack if backend == "grouped" else _LoopedPack)(spec, seeds, cfg, device, channels_last)
    active = list(range(len(seeds)))  # position in `seeds` of each model of the pack
    plateau = _Plateau(len(seeds), cfg.plateau_window, cfg.plateau_tol)
    done: dict[int, TrainedModel] = {}
    fmt = torch.channels_last if channels_last else torch.contiguous_format
    for step in range(cfg.max_steps + 1):
        x = data.batch(_stream_id(cfg.data_seed, step), cfg.batch_size, cfg.crop, device)
        x = x.contiguous(memory_format=fmt)
        with autocast(device, precision):
            losses = pack.losses(x, cfg.loss)
        values = losses.detach().cpu().tolist()
        converged = plateau.update(values, step)
        finished = [j for j, v in enumerate(values) if v <= cfg.eta or step == cfg.max_steps or converged[j]]
        for j in finished:
            pos = active[j]
            done[pos] = TrainedModel(spec, seeds[pos], pack.snapshot(j), float(values[j]), step,
                                     values[j] <= cfg.eta, seconds=time.perf_counter() - t0)
        if len(finished) == len(active):
            break
        if finished:
            keep = [j for j in range(len(active)) if j not in finished]
            # The finished models' losses are dropped from this step's gradient (they are independent
            # of the others), then the pack shrinks after the update.
            losses = losses[keep]
        pack.opt.zero_grad(set_to_none=True)
        losses.sum().backward()
        pack.opt.step()
        if finished:
            pack.keep(keep)
            plateau.keep(keep)
            active = [active[j] for j in keep]
    results = [done[i] for i in range(len(seeds))]
    calibrate(results, data, cfg, device, backend, channels_last)
    for r in results:
        r.seconds = time.perf_counter() - t0
        if on_model:
            on_model(r)
    return results


@torch.no_grad()
def calibrate(models: list[TrainedModel], data: RealData, cfg: TrainConfig, device: torch.device,
              backend: str = "looped", channels_last: bool = False) -> None:
    """Re-estimate BN running statistics with the final weights; set each model's eval-mode loss."""
    if not models:
        return
    spec = models[0].spec
    fmt = torch.channels_last if channels_last else torch.contiguous_format
    calib = [data.batch(_stream_id(cfg.data_seed, _CALIB_OFFSET + j), cfg.batch_size, cfg.calib_crop, device)
             .contiguous(memory_format=fmt) for j in range(cfg.calib_batches + 1)]
    held_out = calib.pop()
    if backend == "grouped":
        groups = [models]
    else:
        groups = [[m] for m in models]
    for group in groups:
        packed = _to(PackedAutoencoder.from_state_dicts(spec, [m.state_dict for m in group], cfg.width),
                     device, channels_last)
        _reestimate_bn(packed, calib)
        packed.eval()
        losses = _per_model_loss(packed(held_out), held_out, cfg.loss).cpu().tolist()
        for m, sd, loss in zip(group, packed.unpack(), losses, strict=True):
            m.state_dict = {k: v.cpu() for k, v in sd.items()}
            m.eval_loss = float(loss)


def _reestimate_bn(module: nn.Module, batches: list[torch.Tensor]) -> None:
    bns = [mod for mod in module.modules() if isinstance(mod, nn.BatchNorm2d)]
    if not bns or not batches:
        return
    saved = [(bn.momentum, bn.num_batches_tracked.clone()) for bn in bns]
    for bn in bns:
        bn.reset_running_stats()
        bn.momentum = None  # cumulative average over the calibration batches
    module.train()
    for x in batches:
        module(x)
    for bn, (momentum, nbt) in zip(bns, saved, strict=True):
        bn.momentum = momentum
        bn.num_batches_tracked.copy_(nbt)


def train_alone(spec: ArchitectureSpec, seed: int, data: RealData, cfg: TrainConfig,
                device: torch.device | str = "cpu", channels_last: bool | None = None) -> TrainedModel:
    """The naive way, one model and one plain :class:`SyntheticAutoencoder` at a time (reference/benchmark)."""
    return train_pack(spec, [seed], data, cfg, device, backend="looped", channels_last=channels_last)[0]
