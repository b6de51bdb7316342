import math

import pytest
import torch

from fpforensics.images.crops import center_crop, grid_crops, grid_offsets
from fpforensics.residual import build_residual
from fpforensics.residual.dncnn import DnCNN, load_dncnn
from fpforensics.residual.median import MedianResidual, median3x3
from fpforensics.spectrum import azimuthal_average, log_magnitude_spectrum, power_spectrum, radial_log_power


def test_median_residual_zero_on_constant_and_removes_smooth_content():
    flat = torch.full((1, 3, 32, 32), 0.4)
    assert torch.allclose(MedianResidual()(flat), torch.zeros_like(flat))
    ramp = torch.linspace(0, 1, 32).repeat(1, 3, 32, 1)
    assert MedianResidual()(ramp)[..., 2:-2, 2:-2].abs().max() < 1e-6


def test_median3x3_matches_reference():
    x = torch.rand(2, 3, 9, 7)
    ref = torch.nn.functional.pad(x, (1, 1, 1, 1), mode="reflect").unfold(2, 3, 1).unfold(3, 3, 1)
    ref = ref.reshape(2, 3, 9, 7, 9).median(dim=-1).values
    assert torch.equal(median3x3(x), ref)


def test_spectrum_shapes_and_centre():
    r = torch.zeros(2, 3, 16, 16)
    r[:, :, :, :] = 1.0  # constant -> all energy at DC
    spec = log_magnitude_spectrum(r)
    assert spec.shape == r.shape
    assert spec[0, 0].argmax().item() == 8 * 16 + 8  # DC shifted to the centre
    power = power_spectrum(r)
    assert power.shape == (2, 16, 16)
    assert math.isclose(power.sum(dim=(-2, -1))[0].item(), 256.0, rel_tol=1e-5)  # Parseval (ortho)


def test_azimuthal_average_of_radial_function():
    h = w = 32
    yy, xx = torch.meshgrid(torch.arange(h) - 16, torch.arange(w) - 16, indexing="ij")
    radius = torch.sqrt(yy.double() ** 2 + xx.double() ** 2).round()
    prof = azimuthal_average((radius.float() * 2.0).unsqueeze(0))
    assert prof.shape == (1, 16)
    assert torch.allclose(prof[0], torch.arange(16).float() * 2.0)


def test_radial_log_power_sees_periodic_trace():
    torch.manual_seed(0)
    base = torch.rand(1, 3, 128, 128) * 0.02
    traced = base.clone()
    traced[..., ::4, ::4] += 0.05  # period-4 grid: peaks at frequency 128/4 = 32 (radius 32 and 45)
    a, b = radial_log_power(base), radial_log_power(traced)
    assert a.shape == (1, 64)
    gain = (b - a)[0]
    assert gain[32] > 0.5 and gain[45] > 0.5 and gain[32] > 2 * gain[20:28].abs().max()


def test_dncnn_shapes_and_checkpoint(tmp_path):
    from fpforensics.checkpoints import save_checkpoint

    net = DnCNN(depth=5, channels=8)
    assert net(torch.rand(1, 3, 20, 20)).shape == (1, 3, 20, 20)
    assert sum(isinstance(m, torch.nn.BatchNorm2d) for m in net.modules()) == 3
    full = DnCNN()
    convs = [m for m in full.modules() if isinstance(m, torch.nn.Conv2d)]
    assert len(convs) == 17 and sum(isinstance(m, torch.nn.BatchNorm2d) for m in full.modules()) == 15
    path = save_checkpoint({"state_dict": net.state_dict(), "depth": 5, "channels": 8}, tmp_path / "d.pt", "dncnn")
    res = load_dncnn(path)
    assert res.identity.startswith("dncnn:")
    x = torch.rand(1, 3, 24, 24)
    assert torch.allclose(res(x), net.eval()(x))
    assert build_residual("median").identity == "median3x3"


def test_load_dncnn_refuses_foreign_file(tmp_path):
    from fpforensics.errors import FptError

    bad = tmp_path / "bad.pt"
    bad.write_bytes(b"\x80\x04not a checkpoint")
    with pytest.raises(FptError):
        load_dncnn(bad)
    torch.save({"x": torch.zeros(1)}, tmp_path / "plain.pt")
    with pytest.raises(FptError, match="not an fpforensics checkpoint"):
        load_dncnn(tmp_path / "plain.pt")


def test_grid_crops_cover_image_equally_spaced():
    img = torch.rand(3, 300, 200)
    crops = grid_crops(img, 128, 3)
    assert crops.shape == (9, 3, 128, 128)
    assert grid_offsets(300, 128, 3) == [0, 86, 172] and grid_offsets(200, 128, 3) == [0, 36, 72]
    assert torch.equal(crops[-1], img[:, 172:300, 72:200])
    assert grid_crops(torch.rand(3, 128, 128), 128, 3).shape[0] == 1
    small = grid_crops(torch.rand(3, 64, 64), 128, 3)
    assert small.shape == (1, 3, 128, 128)
    assert center_crop(torch.rand(3, 64, 96), 128).shape == (3, 128, 128)


def test_no_residual_is_the_image_itself_and_round_trips_through_a_checkpoint_payload():
    from fpforensics.residual import build_residual, residual_from_payload, residual_to_payload
    from fpforensics.residual.none import NoResidual

    x = torch.rand(2, 3, 16, 16)
    none = build_residual("none")
    assert isinstance(none, NoResidual) and torch.equal(none(x), x) and none.identity == "none"
    assert residual_from_payload(residual_to_payload(none)).identity == "none"
    assert residual_from_payload(residual_to_payload(build_residual("median"))).identity == "median3x3"
