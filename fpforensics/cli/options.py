"""CLI: the options several commands share, declared once, and the choice types read from the registries.

Each shared option is an ``Annotated`` type; a command writes ``extractor: Extractor = DEFAULTS.extractor``,
so the flag, its help, its unit and its default (from :data:`~fpforensics.defaults.DEFAULTS`) are
the same everywhere. Choices (``--extractor``, ``--residual``, ``--backbone``, ``--space``) come
from the stage registries when help is shown or a value is parsed, so an implementation registered
anywhere (a plugin, a test) is a valid choice at once.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Annotated

import typer

from fpforensics.defaults import DEFAULTS


class Choice:
    """A typer ``parser``: one of the names ``names()`` returns (case-insensitive), or an existing path if ``paths``.

    A bad value is an :class:`~fpforensics.errors.InputError`: one line, exit code 2, like every bad input.
    """

    def __init__(self, option: str, what: str, names: Callable[[], list[str]], paths: str | None = None) -> None:
        self.option, self.what, self.names, self.paths = option, what, names, paths

    def metavar(self) -> str:
        return "|".join(self.names()) + ("|PATH" if self.paths else "")

    def __call__(self, value: str) -> str:
        names = self.names()
        if value.lower() in names:
            return value.lower()
        if self.paths and Path(value).exists():
            return value
        from fpforensics.errors import InputError

        also = f", or the path of {self.paths}" if self.paths else ""
        raise InputError(f"{self.option}: unknown {self.what} '{value}': use one of {', '.join(names)}{also}")


def _extractors() -> list[str]:
    from fpforensics.extractor import extractor_choices

    return extractor_choices()


def _residuals() -> list[str]:
    from fpforensics.residual import RESIDUALS

    return ["default", *RESIDUALS.names()]


def _backbones() -> list[str]:
    from fpforensics.extractor import BACKBONES

    return BACKBONES.names()


def _spaces() -> list[str]:
    from fpforensics.manifpt import SPACES

    return SPACES.names()


EXTRACTOR_HELP = ("Fingerprint extractor: a registered name (default = the shipped trained extractor, else spectral) "
                  "or a checkpoint from `fpt train extractor`.")
RESIDUAL_HELP = ("Residual: a registered name (default = the shipped DnCNN, else median) or DnCNN weights from "
                 "`fpt train denoiser`.")
EXTRACTOR_CHOICE = Choice("--extractor", "extractor", _extractors, "a checkpoint")

Extractor = Annotated[str, typer.Option("--extractor", "-e", parser=EXTRACTOR_CHOICE, help=EXTRACTOR_HELP)]
Extractors = Annotated[list[str] | None, typer.Option(
    "--extractor", "-e", parser=EXTRACTOR_CHOICE, show_default="default",
    help=EXTRACTOR_HELP + " Repeatable; the spectral and pixels baselines are always added.")]
Residual = Annotated[str, typer.Option("--residual", parser=Choice("--residual", "residual", _residuals,
                                                                   "DnCNN weights"), help=RESIDUAL_HELP)]
Denoiser = Annotated[str | None, typer.Option("--denoiser", parser=Choice("--denoiser", "residual", _residuals,
                                                                          "DnCNN weights"),
                                              show_default="preset's", help=RESIDUAL_HELP)]
Backbone = Annotated[str | None, typer.Option("--backbone", parser=Choice("--backbone", "backbone", _backbones),
                                              show_default="preset's", help="Backbone network of the extractor "
                                                                           "(paper: resnet50).")]
Space = Annotated[str, typer.Option("--space", parser=Choice("--space", "space", _spaces),
                                    help="Feature space of the artifacts.")]
Grid = Annotated[int, typer.Option("--grid", min=1, max=16,
                                   help="Sliding window: N x N crops of 128x128 pixels per image, embeddings averaged.")]
BatchSize = Annotated[int, typer.Option("--batch-size", "-b", min=1, help="Crops per forward pass (128x128 each).")]
Precision = Annotated[str, typer.Option("--precision", parser=Choice("--precision", "precision",
                                                                     lambda: ["auto", "fp32", "bf16"]),
                                        help="Arithmetic: auto = bf16 only where the hardware runs it natively "
                                             "(CUDA, CPUs with AVX-512 BF16/AMX), else fp32.")]
Gallery = Annotated[Path | None, typer.Option(
    "--gallery", "-g", show_default="$FPT_GALLERY, else $XDG_DATA_HOME/fpforensics/gallery.h5",
    help="Gallery file.")]
Json = Annotated[bool, typer.Option("--json", help="Print JSON on stdout instead of text.")]
Shard = Annotated[str | None, typer.Option(
    "--shard", show_default="from the environment, else 0/1", help="Do part i of n (i/n) of the work; each part "
    "writes its own file, merged with --merge. Default: RANK/WORLD_SIZE (torchrun) or SLURM_PROCID/SLURM_NTASKS "
    "when set.")]
Seed = Annotated[int, typer.Option("--seed", help="Random seed.")]
Device = Annotated[str, typer.Option("--device", help="Where to compute: auto | cpu | cuda | cuda:N "
                                                      "(auto = CUDA when present). Printed once, on stderr.")]
Overwrite = Annotated[bool, typer.Option("--overwrite", help="Replace an existing output that fpt wrote (of the same "
                                                            "kind); a file fpt did not write is never replaced.")]
Resume = Annotated[bool, typer.Option("--resume", help="Continue an interrupted run written to --out.")]
Images = Annotated[list[Path], typer.Argument(metavar="IMAGES", show_default=False,
                                              help="Image files and/or folders (searched recursively).")]
Threshold = Annotated[str | None, typer.Option(
    "--threshold", "-t", metavar="COSINE|paper|calibrated|fmr:RATE|gallery", show_default="calibrated",
    help="Operating point: a cosine; 'calibrated' (the extractor's stored equal-error threshold; the paper's 0.81 "
         "when it stores none); 'paper' (0.81); 'fmr:0.01' (false-match rate at most 1% on the calibration data); "
         "'gallery' (identify, verify --model: the gallery's own threshold).")]
MaxFalseMatchRate = Annotated[float | None, typer.Option(
    "--max-false-match-rate", min=0.0, max=1.0, show_default="none",
    help="Lowest threshold whose false-match rate on the calibration data is at most this (same as fmr:RATE).")]
PhotoCut = Annotated[str | None, typer.Option(
    "--photo-cut", metavar="calibrated|enrolled[:KEEP]", show_default="calibrated",
    help="Cut of the real-photo rule: 'calibrated' (fitted with the extractor); 'enrolled:0.9' (raised so that 90% "
         "of the gallery's enrolled images, each scored without itself, pass: fewer generator images answered "
         "unknown, more photographs attributed; needs a gallery that keeps its images' embeddings).")]
WithBuiltin = Annotated[bool, typer.Option(
    "--with-builtin", help="Search the built-in reference gallery too, beside --gallery (or your gallery).")]

__all__ = ["DEFAULTS", "BatchSize", "Backbone", "Choice", "Denoiser", "Device", "Extractor", "Extractors", "Gallery", "Grid",
           "Images", "Json", "MaxFalseMatchRate", "Overwrite", "Precision", "Residual", "Resume", "Seed", "Shard", "Space",
           "Threshold", "WithBuiltin"]
