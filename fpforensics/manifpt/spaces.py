"""ManiFPT, step 1: the feature spaces ``phi`` in which artifacts are measured, one registered function each.

All inputs are decoded images in [0, 1]:

* ``rgb``: the image fitted to ``size x size`` (central crop by default, or resized), flattened:
  ``3*size*size`` values in [0, 1].
* ``freq``: per channel, ``log(|FFT2(x)| + 1e-4)`` of the same fitted image (orthonormal DFT,
  zero frequency centred): log-magnitude, phase dropped. ``3*size*size`` values.
* ``sl``: with ``weights``, the 2048-d pooled features of a torchvision ResNet-50 loaded from a
  local state_dict (ImageNet preprocessing: resize short side to 256, central 224 crop,
  ImageNet mean/std). Without weights, the project's own fingerprint extractor
  (``load_extractor("default")``) is the learned space; ``FeatureSpace.note`` says which.
* ``ssl``: the 2048-d pooled features of a Barlow Twins ResNet-50 from a local weights file
  (same preprocessing); required.

A space is an encoder of the embedding loop (:mod:`fpforensics.embedding.loop`): ``units`` and
``encode``, so real and generated images go through the same loop as every other embedding.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import torch

from fpforensics.checkpoints import safe_torch_load, state_dict_digest
from fpforensics.defaults import DEFAULTS
from fpforensics.embedding.loop import ExtractorEncoder
from fpforensics.errors import IncompatibleError, InputError
from fpforensics.images.crops import fit_image
from fpforensics.manifpt import SPACES
from fpforensics.spectrum import log_magnitude_spectrum

IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)


class FeatureSpace:
    """Maps a list of decoded images to feature rows ``(B, D)`` (float32, CPU); an encoder of the embedding loop.

    ``identity`` changes whenever features would change (space, settings, weights): manifold
    caches and classifiers store it and refuse to mix identities. ``note`` is a human line saying
    what was used (shown by the CLI).
    """

    name: str = "space"
    identity: str = "space"
    dim: int = 0
    note: str = ""

    def __init__(self, size: int, fit: str, device: torch.device) -> None:
        self.size, self.fit, self.device = int(size), fit, torch.device(device)

    @property
    def settings(self) -> dict:
        return {"space": self.name, "size": self.size, "fit": self.fit}

    @property
    def feature_shape(self) -> tuple[int, ...]:
        """Shape of one feature vector before flattening (image-shaped for rgb/freq)."""
        return (self.dim,)

    def view(self, image: torch.Tensor) -> torch.Tensor:
        """The image as shown in panels (and as used by the pixel spaces)."""
        return fit_image(image, self.size, self.fit)

    def features(self, images: Sequence[torch.Tensor]) -> torch.Tensor:  # pragma: no cover - interface
        raise NotImplementedError

    def units(self, image: torch.Tensor) -> int:
        """Batch cost of one image in the embedding loop: one image."""
        return 1

    def encode(self, images: list[torch.Tensor]) -> torch.Tensor:
        return self.features(images)


class RGBSpace(FeatureSpace):
    name = "rgb"

    def __init__(self, size: int = 64, fit: str = "crop", device: torch.device | str = "cpu") -> None:
        super().__init__(size, fit, device)
        self.dim = 3 * self.size * self.size
        self.identity = f"rgb[{self.fit}{self.size}]"

    @property
    def feature_shape(self) -> tuple[int, ...]:
        return (3, self.size, self.size)

    @torch.no_grad()
    def features(self, images: Sequence[torch.Tensor]) -> torch.Tensor:
        return torch.stack([self.view(im) for im in images]).flatten(1).float()


class FreqSpace(RGBSpace):
    name = "freq"

    def __init__(self, size: int = 64, fit: str = "crop", device: torch.device | str = "cpu") -> None:
        super().__init__(size, fit, device)
        self.identity = f"freq[logmag,{self.fit}{self.size}]"

    @torch.no_grad()
    def features(self, images: Sequence[torch.Tensor]) -> torch.Tensor:
        batch = torch.stack([self.view(im) for im in images]).to(self.device)
        return log_magnitude_spectrum(batch).flatten(1).float().cpu()


def _resnet50_trunk(state: dict, path: Path, flavour: str) -> tuple[torch.nn.Module, str]:
    """torchvision ResNet-50 (fc = Identity) from a state_dict; prefixes of common wrappers removed."""
    import torchvision

    for key in ("state_dict", "model", "backbone"):
        if isinstance(state, dict) and key in state and isinstance(state[key], dict):
            state = state[key]
    if not isinstance(state, dict) or not any(isinstance(v, torch.Tensor) for v in state.values()):
        raise IncompatibleError(f"{path}: not a state_dict (no tensors found)")
    cleaned: dict[str, torch.Tensor] = {}
    for key, value in state.items():
        for prefix in ("module.", "backbone.", "encoder.", "model."):
            while key.startswith(prefix):
                key = key[len(prefix):]
        cleaned[key] = value
    model = torchvision.models.resnet50(weights=None)
    model.fc = torch.nn.Identity()
    wanted = model.state_dict()
    trunk = {k: v for k, v in cleaned.items() if k in wanted}
    missing = sorted(set(wanted) - set(trunk))
    if missing:
        raise IncompatibleError(
            f"{path}: not a ResNet-50 {flavour} state_dict ({len(missing)} of {len(wanted)} trunk tensors missing, "
            f"e.g. {missing[0]})")
    bad = [k for k in trunk if tuple(trunk[k].shape) != tuple(wanted[k].shape)]
    if bad:
        raise IncompatibleError(f"{path}: tensor {bad[0]} has shape {tuple(trunk[bad[0]].shape)}, "
                                f"expected {tuple(wanted[bad[0]].shape)} for a ResNet-50")
    model.load_state_dict(trunk, strict=True)
    return model.eval(), state_dict_digest(trunk)


class ResNetSpace(FeatureSpace):
    """Pooled 2048-d features of a ResNet-50 trunk (ImageNet preprocessing at 224)."""

    dim = 2048

    def __init__(self, name: str, weights: str | Path, size: int = 64, fit: str = "crop",
                 device: torch.device | str = "cpu", batch_size: int = 16, state: dict | None = None) -> None:
        super().__init__(size, fit, device)
        self.name = name
        self.batch_size = batch_size
        path = Path(weights)
        flavour = "supervised" if name == "sl" else "Barlow Twins"
        model, digest = _resnet50_trunk(state if state is not None else safe_torch_load(path, "weights file"), path, flavour)
        self.model = model.to(self.device)
        self.digest = digest
        self.identity = f"{name}[resnet50:{digest}]"
        self.note = f"{name}: ResNet-50 ({flavour}) from {path} (digest {digest}), pooled 2048-d features"
        self._mean = torch.tensor(IMAGENET_MEAN, device=self.device).view(1, 3, 1, 1)
        self._std = torch.tensor(IMAGENET_STD, device=self.device).view(1, 3, 1, 1)

    @property
    def settings(self) -> dict:
        # size/fit only shape the panels here, so they are not part of the feature settings.
        return {"space": self.name, "input": "resize256-crop224-imagenet", "weights_digest": self.digest}

    @torch.no_grad()
    def features(self, images: Sequence[torch.Tensor]) -> torch.Tensor:
        rows = []
        for start in range(0, len(images), self.batch_size):
            part = images[start:start + self.batch_size]
            batch = torch.stack([fit_image(im, 256, "resize")[:, 16:240, 16:240] for im in part])
            batch = (batch.to(self.device) - self._mean) / self._std
            rows.append(self.model(batch).float().cpu())
        return torch.cat(rows) if rows else torch.zeros(0, self.dim)


class ExtractorSpace(FeatureSpace):
    """The project's fingerprint extractor (sliding window, L2-normalized) as the learned space."""

    name = "sl"

    def __init__(self, spec: str = "default", size: int = 64, fit: str = "crop",
                 device: torch.device | str = "cpu") -> None:
        from fpforensics.extractor import DEFAULT_EXTRACTOR_PATH, load_extractor

        super().__init__(size, fit, device)
        self.extractor = load_extractor(spec, self.device)
        self.encoder = ExtractorEncoder(self.extractor, DEFAULTS.grid, self.device)
        self.dim = int(self.extractor.embedding_dim)
        self.identity = f"sl[extractor:{self.extractor.identity}]"
        if spec == "default":
            what = ("trained default weights " + str(DEFAULT_EXTRACTOR_PATH)) if DEFAULT_EXTRACTOR_PATH.exists() else \
                "no trained default weights ship yet, so 'default' is the training-free spectral extractor"
            self.note = (f"sl: no --weights given: using the project's own fingerprint extractor "
                         f"'{self.extractor.identity}' ({what}), {self.dim}-d")
        else:
            self.note = f"sl: fpforensics extractor checkpoint {spec} ('{self.extractor.identity}'), {self.dim}-d"

    @property
    def settings(self) -> dict:
        return {"space": self.name, "extractor": self.extractor.identity, "grid": DEFAULTS.grid}

    def units(self, image: torch.Tensor) -> int:
        return self.encoder.units(image)

    @torch.no_grad()
    def features(self, images: Sequence[torch.Tensor]) -> torch.Tensor:
        return self.encoder.encode(list(images))


@SPACES.register("rgb")
def rgb(size: int, fit: str, weights: str | Path | None, device) -> FeatureSpace:
    return RGBSpace(size, fit, device)


@SPACES.register("freq")
def freq(size: int, fit: str, weights: str | Path | None, device) -> FeatureSpace:
    return FreqSpace(size, fit, device)


@SPACES.register("sl")
def sl(size: int, fit: str, weights: str | Path | None, device) -> FeatureSpace:
    """Supervised features: torchvision ResNet-50 weights, an fpt extractor, or (no weights) the shipped extractor."""
    if weights is None:
        return ExtractorSpace("default", size, fit, device)
    path = Path(weights)
    state = safe_torch_load(path, "weights file")
    if isinstance(state, dict) and "fpt_kind" in state:
        if state["fpt_kind"] != "extractor":
            raise IncompatibleError(f"{path}: is a '{state['fpt_kind']}' checkpoint, expected ResNet-50 weights "
                                    "or an extractor checkpoint")
        return ExtractorSpace(str(path), size, fit, device)
    return ResNetSpace("sl", path, size, fit, device, state=state)


@SPACES.register("ssl")
def ssl(size: int, fit: str, weights: str | Path | None, device) -> FeatureSpace:
    """Self-supervised features: a Barlow Twins ResNet-50 state_dict, required."""
    if weights is None:
        raise InputError("--space ssl needs --weights PATH: a local Barlow Twins ResNet-50 state_dict "
                         "(e.g. resnet50.pth from facebookresearch/barlowtwins); nothing is downloaded")
    return ResNetSpace("ssl", Path(weights), size, fit, device)
