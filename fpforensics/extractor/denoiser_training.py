"""Training the DnCNN denoiser of METHOD 1.1 on real photographs (``fpt train denoiser``).

Residual learning as in Zhang et al. 2017: the network sees ``y = x + n`` with Gaussian noise
``n`` of standard deviation ``sigma / 255`` and is trained to output ``n`` (so ``denoise(y) =
y - net(y)``). Patches are random ``patch x patch`` crops (40 x 40 in the paper) of the training
photos with a random flip / 90-degree rotation. The loss is the MSE measured on the 0..255
scale, so a loss of 1.0 means "no better than doing nothing" at sigma = 1 and the numbers are
readable whatever sigma is.

Photos are split by file into training and held-out images; PSNR is measured on fixed crops of
the held-out images with fixed noise: of the noisy input (what the denoiser starts from) and of
the denoised output. The difference is the PSNR gain that shows the denoiser learned something.
The noise is not clipped to [0, 1]: the residual the extractor uses must be the noise model the
denoiser learned, and clipping would bias it at dark and bright pixels.

With ``jpeg_p > 0`` that share of the training patches is JPEG-compressed (quality drawn in
``[jpeg_min_quality, 100]``, at a random 8x8 grid phase) *before* the noise is added, and the target
is still the noise alone: the network learns that block and ringing artifacts are image content,
not noise. Without it, the residual of a re-encoded image is dominated by what the denoiser makes
of JPEG artifacts it never saw, and an extractor trained on that residual loses its fingerprints
under JPEG. The held-out PSNR is then also reported on JPEG-75 crops (``psnr_jpeg``).

The output checkpoint (kind ``dncnn``) loads with :func:`fpforensics.residual.dncnn.load_dncnn`. While
training it is rewritten every ``save_every`` steps with the optimizer state, so ``resume=True``
continues an interrupted run; the final file drops the optimizer state.
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import torch
import torch.nn.functional as F

from fpforensics.checkpoints import check_checkpoint_output, load_checkpoint, save_checkpoint
from fpforensics.defaults import DEFAULTS
from fpforensics.errors import IncompatibleError, InputError
from fpforensics.images.crops import random_crop
from fpforensics.images.real import load_photos
from fpforensics.residual.dncnn import DnCNN


@dataclass
class DenoiserConfig:
    """Everything that defines a denoiser training run (stored in the checkpoint)."""

    sigma: float = DEFAULTS.denoiser_sigma  # on the 0..255 scale
    sigma_max: float = 0.0  # > sigma: blind training, each patch's sigma drawn uniformly in [sigma, sigma_max]
    jpeg_p: float = 0.0  # share of patches JPEG-compressed before the noise is added (target: the noise alone)
    jpeg_min_quality: int = 60  # JPEG quality drawn uniformly in [jpeg_min_quality, 100]
    depth: int = DEFAULTS.dncnn_depth
    channels: int = DEFAULTS.dncnn_channels
    patch: int = DEFAULTS.denoiser_patch
    batch_size: int = DEFAULTS.denoiser_batch_size
    steps: int = DEFAULTS.denoiser_steps
    lr: float = DEFAULTS.denoiser_lr
    val_fraction: float = 0.1
    val_crops: int = 64
    val_size: int = 64
    save_every: int = 200
    seed: int = 0

    def validate(self) -> None:
        checks = [
            (self.sigma > 0, "--sigma must be > 0"),
            (self.sigma_max == 0 or self.sigma_max > self.sigma, "--sigma-max must be 0 (off) or above --sigma"),
            (0 <= self.jpeg_p <= 1, "--jpeg-p must be in [0, 1]"),
            (1 <= self.jpeg_min_quality <= 100, "--jpeg-min-quality must be in 1..100"),
            (self.depth >= 3, "--depth must be at least 3"),
            (self.channels >= 1, "--channels must be >= 1"),
            (self.patch >= 8, "--patch must be at least 8"),
            (self.batch_size >= 1, "--batch-size must be >= 1"),
            (self.steps >= 1, "--steps must be >= 1"),
            (self.lr > 0, "--lr must be > 0"),
            (0 < self.val_fraction < 1, "--val-fraction must be in (0, 1)"),
            (self.val_crops >= 1, "--val-crops must be >= 1"),
            (self.val_size >= 8, "--val-size must be at least 8"),
            (self.save_every >= 1, "--save-every must be >= 1"),
        ]
        for ok, msg in checks:
            if not ok:
                raise InputError(msg)


@dataclass
class DenoiserResult:
    path: Path
    steps: int
    psnr_noisy: float
    psnr_denoised: float
    train_images: int
    val_images: int
    seconds: float
    final_loss: float
    levels: list[dict[str, float]] | None = None  # held-out PSNR per sigma: noisy, median 3x3, DnCNN
    psnr_jpeg: dict[str, float] | None = None  # the same at --sigma on JPEG-75 crops (jpeg_p > 0 only)

    @property
    def psnr_gain(self) -> float:
        return self.psnr_denoised - self.psnr_noisy

    def to_dict(self) -> dict[str, Any]:
        return {"path": str(self.path), "steps": self.steps, "psnr_noisy": self.psnr_noisy,
                "psnr_denoised": self.psnr_denoised, "psnr_gain": self.psnr_gain, "train_images": self.train_images,
                "val_images": self.val_images, "seconds": self.seconds, "final_loss": self.final_loss,
                "levels": self.levels, "psnr_jpeg": self.psnr_jpeg}


def split_photos(photos: list[torch.Tensor], val_fraction: float, seed: int
                 ) -> tuple[list[torch.Tensor], list[torch.Tensor]]:
    """Hold out whole photos (not crops of training photos) for the PSNR measurement."""
    if len(photos) < 2:
        raise InputError(f"need at least 2 readable real photos (one is held out for validation), got {len(photos)}")
    order = torch.randperm(len(photos), generator=torch.Generator().manual_seed(seed)).tolist()
    n_val = min(len(photos) - 1, max(1, round(len(photos) * val_fraction)))
    return [photos[i] for i in order[n_val:]], [photos[i] for i in order[:n_val]]


def random_patches(photos: list[torch.Tensor], n: int, size: int, gen: torch.Generator, augment: bool = True
                   ) -> torch.Tensor:
    """``n`` random ``size x size`` float patches in [0, 1], with random flips / 90-degree rotations."""
    idx = torch.randint(len(photos), (n,), generator=gen).tolist()
    out = torch.empty(n, 3, size, size)
    for j, i in enumerate(idx):
        patch = random_crop(photos[i], size, gen)[0].float().div_(255)
        if augment:
            mode = int(torch.randint(8, (1,), generator=gen))
            patch = torch.rot90(patch, mode % 4, dims=(1, 2))
            if mode >= 4:
                patch = patch.flip(2)
        out[j] = patch
    return out


JPEG_GRID = 8  # the JPEG block size: patches are cut this much larger so the grid phase can vary


def jpeg_patches(x: torch.Tensor, p: float, min_quality: int, gen: torch.Generator, size: int) -> torch.Tensor:
    """``size x size`` crops of ``x`` (``size + JPEG_GRID`` square); a share ``p`` JPEG-compressed first.

    Compression comes before the crop, so the block grid lands at a random phase in the patch,
    as it does in a crop of a re-encoded image. Every draw comes from ``gen`` (resume-exact).
    """
    from fpforensics.perturbations import Jpeg

    jpeg = Jpeg()
    out = torch.empty(x.shape[0], x.shape[1], size, size)
    for i in range(x.shape[0]):
        img = x[i]
        if float(torch.rand(1, generator=gen)) < p:
            quality = int(torch.randint(min_quality, 101, (1,), generator=gen))
            img = jpeg.apply(img, quality, None)
        dy, dx = (int(v) for v in torch.randint(x.shape[-1] - size + 1, (2,), generator=gen))
        out[i] = img[:, dy:dy + size, dx:dx + size]
    return out


def psnr(a: torch.Tensor, b: torch.Tensor) -> float:
    """PSNR in dB of images in [0, 1] (peak 1), over the whole set."""
    mse = F.mse_loss(a.double(), b.double()).item()
    return float("inf") if mse == 0 else 10.0 * math.log10(1.0 / mse)


@torch.no_grad()
def evaluate_denoiser(net: DnCNN, clean: torch.Tensor, noise: torch.Tensor, device: torch.device,
                      batch_size: int = 16) -> tuple[float, float]:
    """PSNR of the noisy input and of the denoised output against the clean crops."""
    was_training = net.training
    net.eval()
    denoised = []
    for start in range(0, clean.shape[0], batch_size):
        y = (clean[start:start + batch_size] + noise[start:start + batch_size]).to(device)
        denoised.append((y - net(y)).float().cpu())
    net.train(was_training)
    return psnr(clean + noise, clean), psnr(torch.cat(denoised), clean)


@torch.no_grad()
def psnr_by_level(net: DnCNN, clean: torch.Tensor, sigmas: Sequence[float], device: torch.device,
                  seed: int = 0) -> list[dict[str, float]]:
    """Held-out PSNR (dB) at each noise level of the noisy input, the 3x3 median and the DnCNN.

    The median is the training-free residual the extractor uses by default: the DnCNN is only
    worth its cost at the levels where it beats it.
    """
    from fpforensics.residual.median import median3x3

    rows = []
    for sigma in sigmas:
        noise = torch.randn(clean.shape, generator=torch.Generator().manual_seed(seed + int(sigma * 1000))) * (sigma / 255)
        noisy, dncnn = evaluate_denoiser(net, clean, noise, device)
        rows.append({"sigma": float(sigma), "noisy": noisy, "median3x3": psnr(median3x3(clean + noise), clean),
                     "dncnn": dncnn})
    return rows


@torch.no_grad()
def psnr_on_jpeg(net: DnCNN, clean: torch.Tensor, sigma: float, device: torch.device, seed: int = 0,
                 quality: int = 75) -> dict[str, float]:
    """Held-out PSNR against the JPEG-compressed crop, for noise added after compression.

    The JPEG crop is the target: a denoiser that keeps block artifacts as content scores high here.
    """
    from fpforensics.perturbations import Jpeg

    jpeg = torch.stack([Jpeg().apply(c, quality, None) for c in clean])
    row = psnr_by_level(net, jpeg, [sigma], device, seed)[0]
    return {"quality": float(quality), **row}


def _payload(net: DnCNN, cfg: DenoiserConfig, step: int, extra: dict[str, Any]) -> dict[str, Any]:
    return {"state_dict": {k: v.detach().cpu() for k, v in net.state_dict().items()}, "depth": cfg.depth,
            "channels": cfg.channels, "sigma": cfg.sigma, "steps": step, "config": asdict(cfg), **extra}


def train_denoiser(
    real_paths: Sequence[Path],
    out: str | Path,
    cfg: DenoiserConfig | None = None,
    device: torch.device | str = "cpu",
    resume: bool = False,
    overwrite: bool = False,
    on_step: Callable[[int, float], None] | None = None,
    on_skip: Callable[[Path, str], None] | None = None,
    on_start: Callable[[int], None] | None = None,
) -> DenoiserResult:
    """Train a DnCNN on ``real_paths`` and write it to ``out``; see the module docstring.

    ``on_step(step, loss)`` is called after every step (loss on the 0..255 scale);
    ``on_start(first_step)`` once before the first step (non-zero when resuming).
    """
    cfg = cfg or DenoiserConfig()
    cfg.validate()
    out = Path(out)
    check_checkpoint_output(out, "dncnn", resume, overwrite)
    device = torch.device(device)
    started = time.perf_counter()
    photos = load_photos(real_paths, max(cfg.patch, cfg.val_size), on_skip=on_skip)
    train, val = split_photos(photos, cfg.val_fraction, cfg.seed)

    # Fixed held-out crops and noise: the same numbers before, during and after training.
    val_gen = torch.Generator().manual_seed(cfg.seed + 1)
    clean = random_patches(val, cfg.val_crops, cfg.val_size, val_gen, augment=False)
    noise = torch.randn(clean.shape, generator=val_gen) * (cfg.sigma / 255.0)

    torch.manual_seed(cfg.seed)
    net = DnCNN(depth=cfg.depth, channels=cfg.channels)
    # Start as the identity denoiser (predicted noise 0, loss = 1 at sigma 1) rather than from a
    # random output hundreds of times larger than the noise: training then only has to improve on it.
    torch.nn.init.zeros_(net.body[-1].weight)
    net = net.to(device)
    opt = torch.optim.Adam(net.parameters(), lr=cfg.lr)
    sched = torch.optim.lr_scheduler.CosineAnnealingLR(opt, T_max=cfg.steps, eta_min=cfg.lr * 0.01)
    step = 0
    if resume and out.exists():
        state = load_checkpoint(out, kind="dncnn")
        if state.get("complete"):
            raise InputError(f"{out}: training already complete ({state.get('steps')} steps); nothing to resume")
        if "optimizer" not in state:
            raise InputError(f"{out}: has no optimizer state, cannot resume")
        saved = state.get("config", {})
        for key in ("sigma", "sigma_max", "jpeg_p", "jpeg_min_quality", "depth", "channels", "patch", "batch_size",
                    "steps", "lr", "seed"):
            if key in saved and saved[key] != getattr(cfg, key):
                raise IncompatibleError(f"{out}: was started with {key}={saved[key]}, now {getattr(cfg, key)}; "
                                        "use the same settings to resume")
        net.load_state_dict(state["state_dict"])
        opt.load_state_dict(state["optimizer"])
        sched.load_state_dict(state["scheduler"])
        step = int(state["steps"])
    if on_start:
        on_start(step)

    net.train()
    loss_value = float("nan")
    scale = 255.0  # loss on the 0..255 scale: 1.0 = doing nothing at sigma 1
    while step < cfg.steps:
        # Per-step generator: a resumed run draws exactly the patches the uninterrupted one would.
        gen = torch.Generator().manual_seed(cfg.seed * 1_000_003 + step)
        if cfg.jpeg_p:
            x = jpeg_patches(random_patches(train, cfg.batch_size, cfg.patch + JPEG_GRID, gen), cfg.jpeg_p,
                             cfg.jpeg_min_quality, gen, cfg.patch).to(device)
        else:
            x = random_patches(train, cfg.batch_size, cfg.patch, gen).to(device)
        sigma = torch.full((x.shape[0], 1, 1, 1), cfg.sigma)
        if cfg.sigma_max:
            sigma = cfg.sigma + torch.rand(sigma.shape, generator=gen) * (cfg.sigma_max - cfg.sigma)
        n = (torch.randn(x.shape, generator=gen) * (sigma / 255.0)).to(device)
        loss = F.mse_loss(net(x + n) * scale, n * scale)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
        sched.step()
        step += 1
        loss_value = float(loss.detach())
        if not math.isfinite(loss_value):
            raise InputError(f"training diverged at step {step} (loss {loss_value}); try a smaller --lr")
        if on_step:
            on_step(step, loss_value)
        if step % cfg.save_every == 0 and step < cfg.steps:
            save_checkpoint(_payload(net, cfg, step, {"complete": False, "optimizer": opt.state_dict(),
                                                      "scheduler": sched.state_dict()}), out, kind="dncnn")

    psnr_noisy, psnr_denoised = evaluate_denoiser(net, clean, noise, device)
    levels = sorted({1.0, 2.0, 3.0, 5.0, 10.0, cfg.sigma} | ({cfg.sigma_max} if cfg.sigma_max else set()))
    result = DenoiserResult(out, step, psnr_noisy, psnr_denoised, len(train), len(val),
                            time.perf_counter() - started, loss_value,
                            psnr_by_level(net, clean, levels, device, cfg.seed))
    if cfg.jpeg_p:
        result.psnr_jpeg = psnr_on_jpeg(net, clean, cfg.sigma, device, cfg.seed)
    save_checkpoint(_payload(net, cfg, step, {"levels": result.levels, "psnr_jpeg": result.psnr_jpeg,
        "complete": True, "psnr_noisy": psnr_noisy, "psnr_denoised": psnr_denoised,
        "psnr_gain": result.psnr_gain, "train_images": len(train), "val_images": len(val), "final_loss": loss_value,
    }), out, kind="dncnn")
    return result
