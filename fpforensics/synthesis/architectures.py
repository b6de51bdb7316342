"""The grid of 288 synthetic auto-encoder architectures (METHOD 1.2).

An architecture is six choices: K down/up blocks, L convs per up-block, U up-sampling,
A activation, N normalization, S order. Each has a stable index (0..287, the product order
of :data:`OPTIONS`), a short code such as ``K1L2UdAtNbSo`` and a readable name.

Choices the method leaves open, made here (and documented in README):
* Norm and activation follow *every* conv of an up-block, including the last one that outputs
  3 channels (so the activation shapes the output range, e.g. sigmoid -> (0, 1)), with one
  exception (grid version 2): instance norm never normalises the 3-channel output of a "post"
  architecture. It would fix every image's per-channel mean and contrast to two learned
  constants, so those 48 models could not reconstruct their input (their loss plateaus at ~0.07,
  14x eta); no real generator normalises its RGB output either.
* Instance norm is affine (learned scale/shift), otherwise a 3-channel output could not reach
  the image's intensity range.
* In "pre" order the up-block is ``norm -> act -> upsample -> conv`` for its first conv and
  ``norm -> act -> conv`` for a second one.
* The transposed conv ("deconv") keeps the channel count: ``ConvTranspose2d(c, c, 2, stride=2)``.
"""

from __future__ import annotations

import itertools
from dataclasses import dataclass

import torch
import torch.nn as nn

from fpforensics.defaults import DEFAULTS
from fpforensics.errors import InputError

GRID_VERSION = 2  # 2: no instance norm on the RGB output of "post" architectures (see above)

OPTIONS: dict[str, tuple] = {
    "K": (1, 2),
    "L": (1, 2),
    "U": ("nearest", "bilinear", "deconv"),
    "A": ("none", "relu", "sigmoid", "tanh"),
    "N": ("none", "batch", "instance"),
    "S": ("post", "pre"),
}
_LETTER = {
    "U": {"nearest": "n", "bilinear": "b", "deconv": "d"},
    "A": {"none": "0", "relu": "r", "sigmoid": "s", "tanh": "t"},
    "N": {"none": "0", "batch": "b", "instance": "i"},
    "S": {"post": "o", "pre": "e"},
}


@dataclass(frozen=True, order=True)
class ArchitectureSpec:
    """One point of the grid."""

    K: int
    L: int
    U: str
    A: str
    N: str
    S: str

    @property
    def index(self) -> int:
        idx = 0
        for key, values in OPTIONS.items():
            idx = idx * len(values) + values.index(getattr(self, key))
        return idx

    @property
    def code(self) -> str:
        """Stable short code, e.g. ``K1L2UdAtNbSo``."""
        return (f"K{self.K}L{self.L}U{_LETTER['U'][self.U]}A{_LETTER['A'][self.A]}"
                f"N{_LETTER['N'][self.N]}S{_LETTER['S'][self.S]}")

    @property
    def name(self) -> str:
        return f"K={self.K} L={self.L} U={self.U} A={self.A} N={self.N} S={self.S}"

    def as_dict(self) -> dict[str, object]:
        return {k: getattr(self, k) for k in OPTIONS}

    @classmethod
    def from_code(cls, code: str) -> ArchitectureSpec:
        try:
            k, l_, u, a, n, s = code[1], code[3], code[5], code[7], code[9], code[11]
            inv = {key: {v: name for name, v in table.items()} for key, table in _LETTER.items()}
            assert len(code) == 12 and code[0] + code[2] + code[4] + code[6] + code[8] + code[10] == "KLUANS"
            return cls(K=int(k), L=int(l_), U=inv["U"][u], A=inv["A"][a], N=inv["N"][n], S=inv["S"][s])
        except (IndexError, KeyError, ValueError, AssertionError):
            raise InputError(f"'{code}' is not an architecture code (expected e.g. K1L2UdAtNbSo)") from None


def all_architectures() -> list[ArchitectureSpec]:
    """All 288, in index order."""
    return [ArchitectureSpec(*combo) for combo in itertools.product(*OPTIONS.values())]


def parse_grid(expr: str) -> list[ArchitectureSpec]:
    """Select architectures: ``all``, or comma-separated terms ``KEY=v1|v2`` / ``KEY!=v`` (AND-ed).

    Examples: ``U=deconv,A=relu|tanh``; ``U=nearest`` is the paper's "without U variety" ablation.
    Also accepts a comma-separated list of codes (``K1L2UdAtNbSo,K2L1...``).
    """
    expr = (expr or "").strip()
    if not expr:
        raise InputError("empty --arch-grid: use 'all' or terms like U=deconv,A=relu|tanh")
    if expr.lower() == "all":
        return all_architectures()
    terms = [t.strip() for t in expr.split(",") if t.strip()]
    if all(t.startswith("K") and "=" not in t and len(t) == 12 for t in terms):
        return sorted({ArchitectureSpec.from_code(t) for t in terms}, key=lambda s: s.index)
    keep: dict[str, set] = {key: set(values) for key, values in OPTIONS.items()}
    for term in terms:
        negate = "!=" in term
        if "=" not in term:
            raise InputError(f"--arch-grid term '{term}': expected KEY=value (KEY one of {', '.join(OPTIONS)})")
        key, _, raw = term.partition("!=" if negate else "=")
        key = key.strip().upper()
        if key not in OPTIONS:
            raise InputError(f"--arch-grid term '{term}': unknown option '{key}' (one of {', '.join(OPTIONS)})")
        values = set()
        for v in raw.split("|"):
            v = v.strip().lower()
            match = [o for o in OPTIONS[key] if str(o) == v]
            if not match:
                allowed = "|".join(str(o) for o in OPTIONS[key])
                raise InputError(f"--arch-grid term '{term}': '{v}' is not a value of {key} ({allowed})")
            values.add(match[0])
        keep[key] = keep[key] - values if negate else keep[key] & values
    selected = [s for s in all_architectures() if all(getattr(s, k) in keep[k] for k in OPTIONS)]
    if not selected:
        raise InputError(f"--arch-grid '{expr}' selects no architecture")
    return selected


def norm_layer(kind: str, channels: int) -> nn.Module:
    if kind == "batch":
        return nn.BatchNorm2d(channels)
    if kind == "instance":
        return nn.InstanceNorm2d(channels, affine=True)
    return nn.Identity()


def activation_layer(kind: str) -> nn.Module:
    return {"none": nn.Identity, "relu": nn.ReLU, "sigmoid": nn.Sigmoid, "tanh": nn.Tanh}[kind]()


def upsample_layer(kind: str, channels: int, groups: int = 1) -> nn.Module:
    """x2 up-sampling; ``groups`` > 1 keeps packed models' transposed convs separate."""
    if kind == "deconv":
        return nn.ConvTranspose2d(channels, channels, kernel_size=2, stride=2, groups=groups)
    return nn.Upsample(scale_factor=2, mode=kind, **({"align_corners": False} if kind == "bilinear" else {}))


def down_block(c_in: int, c_out: int) -> nn.Sequential:
    return nn.Sequential(
        nn.AvgPool2d(2),
        nn.Conv2d(c_in, c_out, 3, padding=1), nn.BatchNorm2d(c_out), nn.ReLU(),
        nn.Conv2d(c_out, c_out, 3, padding=1), nn.BatchNorm2d(c_out),
    )


def output_norm(spec: ArchitectureSpec, is_output: bool, grid_version: int = GRID_VERSION) -> str:
    """The norm after a conv of a "post" up-block: none on the RGB output when it would be instance norm (grid v2)."""
    return "none" if grid_version >= 2 and is_output and spec.N == "instance" else spec.N


def up_block(spec: ArchitectureSpec, c_in: int, c_out: int, grid_version: int = GRID_VERSION) -> nn.Sequential:
    layers: list[nn.Module] = []
    channels = [c_in] + [c_out] * spec.L
    for i in range(spec.L):
        conv = nn.Conv2d(channels[i], channels[i + 1], 3, padding=1)
        if spec.S == "post":
            if i == 0:
                layers.append(upsample_layer(spec.U, c_in))
            is_output = c_out == 3 and i == spec.L - 1
            norm = norm_layer(output_norm(spec, is_output, grid_version), channels[i + 1])
            layers += [conv, norm, activation_layer(spec.A)]
        else:
            layers += [norm_layer(spec.N, channels[i]), activation_layer(spec.A)]
            if i == 0:
                layers.append(upsample_layer(spec.U, c_in))
            layers.append(conv)
    return nn.Sequential(*layers)


class SyntheticAutoencoder(nn.Module):
    """K down-blocks then K up-blocks; maps ``(B, 3, H, W)`` to ``(B, 3, H, W)`` (H, W divisible by 2^K)."""

    def __init__(self, spec: ArchitectureSpec, width: int = int(DEFAULTS["synth_width"]),
                 grid_version: int = GRID_VERSION) -> None:
        super().__init__()
        self.spec = spec
        widths = [3] + [width * 2**i for i in range(spec.K)]
        self.down = nn.Sequential(*[down_block(widths[i], widths[i + 1]) for i in range(spec.K)])
        ups = []
        for i in range(spec.K, 0, -1):
            ups.append(up_block(spec, widths[i], widths[i - 1] if i > 1 else 3, grid_version))
        self.up = nn.Sequential(*ups)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.up(self.down(x))


def model_seed(spec: ArchitectureSpec, seed: int) -> int:
    """Deterministic torch seed of model (architecture, seed), independent of how models are scheduled."""
    return 1_000_003 * (spec.index + 1) + 7919 * seed


def build_autoencoder(spec: ArchitectureSpec, seed: int, width: int = int(DEFAULTS["synth_width"])) -> SyntheticAutoencoder:
    """A freshly initialised synthetic model; the same (spec, seed) always gives the same weights."""
    gen_state = torch.random.get_rng_state()
    try:
        torch.manual_seed(model_seed(spec, seed))
        return SyntheticAutoencoder(spec, width)
    finally:
        torch.random.set_rng_state(gen_state)


def conv_macs(spec: ArchitectureSpec, width: int = int(DEFAULTS["synth_width"]), size: int = 128) -> int:
    """Multiply-accumulates of the convolutions of one forward pass at ``size`` x ``size``: the cost model of an ETA.

    Counted from the layer shapes (no network is built); K=2 models cost about 3.5x a K=1 model.
    """
    widths = [3] + [width * 2**i for i in range(spec.K)]
    macs, side = 0, size
    for i in range(spec.K):
        side //= 2
        macs += side * side * 9 * (widths[i] * widths[i + 1] + widths[i + 1] ** 2)
    for i in range(spec.K, 0, -1):
        side *= 2
        c_in, c_out = widths[i], widths[i - 1] if i > 1 else 3
        if spec.U == "deconv":  # ConvTranspose2d(c, c, 2, stride=2): one c x c product per output pixel
            macs += side * side * c_in * c_in
        chans = [c_in] + [c_out] * spec.L
        macs += sum(side * side * 9 * chans[j] * chans[j + 1] for j in range(spec.L))
    return macs
