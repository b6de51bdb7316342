"""Extension points: an implementation registered anywhere is a choice of the CLI and works end to end."""

from __future__ import annotations

import subprocess
import sys

import pytest
import torch
from helpers import invoke, runner

from fpforensics.cli.app import app
from fpforensics.errors import InputError
from fpforensics.extractor import BACKBONES, EXTRACTORS
from fpforensics.extractor.network import FingerprintNet
from fpforensics.registry import Registry
from fpforensics.residual import RESIDUALS, build_residual
from fpforensics.residual.base import ResidualExtractor


def test_registry_decorator_lookup_and_errors():
    reg: Registry = Registry("widget")

    @reg.register("Small")
    def small():
        return "s"

    assert reg.names() == ["small"] and reg.get("SMALL") is small and "small" in reg and list(reg) == ["small"]
    with pytest.raises(InputError, match="unknown widget 'big': use one of small"):
        reg.get("big")
    with pytest.raises(ValueError, match="already registered"):
        reg.register("small")(lambda: "other")
    reg.unregister("small")
    assert reg.names() == []


def help_text(*command: str) -> str:
    """``--help`` of a command in a wide terminal (choices are not wrapped)."""
    res = runner.invoke(app, [*command, "--help"], env={"COLUMNS": "400"})
    assert res.exit_code == 0, res.output
    return res.stdout


@pytest.fixture()
def tiny_backbone():
    @BACKBONES.register("tiny_test_net")
    def tiny_test_net():
        trunk = torch.nn.Sequential(torch.nn.Conv2d(3, 8, 3, stride=4), torch.nn.AdaptiveAvgPool2d(1),
                                    torch.nn.Flatten())
        return trunk, 8

    yield "tiny_test_net"
    BACKBONES.unregister("tiny_test_net")


class HalfResidual(ResidualExtractor):
    """A toy residual: half the image (enough to tell it from the others)."""

    name = "half_test"
    identity = "half"

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x / 2


@pytest.fixture()
def half_residual():
    RESIDUALS.register("half_test")(HalfResidual)
    yield "half_test"
    RESIDUALS.unregister("half_test")


def test_registered_backbone_is_a_cli_choice_and_builds(tiny_backbone):
    assert tiny_backbone in help_text("train", "extractor")
    net = FingerprintNet(tiny_backbone, embedding_dim=4)
    assert net.embed(torch.rand(2, 3, 32, 32)).shape == (2, 4)
    # the option parser accepts it: the run goes on to fail on the missing pool, not on the backbone
    res = invoke(["train", "extractor", "--pool", "/nonexistent.h5", "--real", ".", "-o", "x.pt", "--backbone",
                  tiny_backbone])
    assert res.exit_code == 2 and "nonexistent" in res.stderr and "backbone" not in res.stderr
    res = invoke(["train", "extractor", "--pool", "/nonexistent.h5", "--real", ".", "-o", "x.pt", "--backbone", "vgg"])
    assert res.exit_code == 2 and "unknown backbone 'vgg'" in res.stderr and tiny_backbone in res.stderr


def test_registered_residual_is_a_cli_choice_and_runs(half_residual, model_set_dir):
    assert half_residual in help_text("ffd")
    assert isinstance(build_residual(half_residual), HalfResidual)
    res = invoke(["--device", "cpu", "ffd", str(model_set_dir), str(model_set_dir), "-n", "2", "--residual",
                  half_residual, "--json"])
    assert res.exit_code == 0, res.output
    assert "residual=half" in res.stdout


def test_registered_extractor_is_a_cli_choice(model_set_dir, tmp_path):
    from fpforensics.extractor.baselines import PixelExtractor

    @EXTRACTORS.register("pixels_test")
    class PixelsAgain(PixelExtractor):
        identity = "pixels-again"

    try:
        assert "pixels_test" in help_text("embed")
        res = invoke(["--device", "cpu", "embed", str(model_set_dir / "model0"), "-o", str(tmp_path / "e.h5"), "-e",
                      "pixels_test"])
        assert res.exit_code == 0 and "extractor pixels-again" in res.stdout, res.output
    finally:
        EXTRACTORS.unregister("pixels_test")


def test_choices_do_not_import_torch_at_startup():
    """The registries are read when help is shown or a value parsed, so `fpt --help` stays free of torch."""
    code = ("import sys; import fpforensics; from fpforensics.cli.app import app; "
            "from fpforensics.extractor import BACKBONES; print('torch' in sys.modules, fpforensics.DEFAULTS.grid)")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.split() == ["False", "3"]


def test_subcommand_help_does_not_import_torch():
    """`fpt identify --help` lists the registries' choices from their declared built-in names: no torch import."""
    code = ("import sys; from fpforensics.cli.app import app; "
            "app(['identify', '--help'], standalone_mode=False); print('torch' in sys.modules)")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip().splitlines()[-1] == "False"


@pytest.mark.parametrize("registry_path", [
    "fpforensics.extractor:EXTRACTORS", "fpforensics.extractor:BACKBONES", "fpforensics.residual:RESIDUALS",
    "fpforensics.evaluation:PROTOCOLS", "fpforensics.manifpt:SPACES"])
def test_declared_builtin_names_are_the_registered_ones(registry_path):
    """The names listed without importing (help) are exactly those the built-in modules register, in order."""
    import importlib

    module, name = registry_path.split(":")
    code = (f"import importlib; reg = getattr(importlib.import_module('{module}'), '{name}'); "
            "before = reg.names(); reg._load(); print(before == list(reg._entries)[:len(before)] "
            "and set(reg._entries) == set(before))")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "True", (registry_path, out.stderr)
    assert importlib.import_module(module)  # the registry module itself imports
