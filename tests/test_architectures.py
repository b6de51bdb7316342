import pytest
import torch

from fpforensics.errors import InputError
from fpforensics.synthesis.architectures import (
    OPTIONS,
    ArchitectureSpec,
    all_architectures,
    build_autoencoder,
    parse_grid,
)


def test_grid_has_288_unique_with_expected_counts():
    archs = all_architectures()
    assert len(archs) == 288 and len({a.code for a in archs}) == 288
    for key, values in OPTIONS.items():
        for v in values:
            assert sum(getattr(a, key) == v for a in archs) == 288 // len(values)
    assert [a.index for a in archs] == list(range(288))
    assert all(ArchitectureSpec.from_code(a.code) == a for a in archs)


@pytest.mark.parametrize("arch", all_architectures()[::7])
def test_architecture_maps_image_to_image(arch):
    model = build_autoencoder(arch, seed=0)
    assert model(torch.rand(1, 3, 128, 128)).shape == (1, 3, 128, 128)


def test_every_architecture_shape_fast():
    x = torch.rand(1, 3, 16, 16)
    for arch in all_architectures():
        assert build_autoencoder(arch, 0, width=4)(x).shape == (1, 3, 16, 16), arch.code


def test_build_is_deterministic_and_seed_dependent():
    arch = all_architectures()[100]
    a, b, c = build_autoencoder(arch, 3), build_autoencoder(arch, 3), build_autoencoder(arch, 4)
    sa, sb, sc = a.state_dict(), b.state_dict(), c.state_dict()
    assert all(torch.equal(sa[k], sb[k]) for k in sa)
    assert not all(torch.equal(sa[k], sc[k]) for k in sa)


def test_parse_grid_filters_and_ablations():
    assert len(parse_grid("all")) == 288
    sel = parse_grid("U=deconv,A=relu|tanh")
    assert len(sel) == 48 and all(a.U == "deconv" and a.A in ("relu", "tanh") for a in sel)
    assert len(parse_grid("u!=deconv")) == 192
    assert len(parse_grid("U=nearest")) == 96  # the paper's "without U variety" ablation
    codes = [a.code for a in sel[:2]]
    assert parse_grid(",".join(codes)) == sel[:2]
    for bad, msg in [("X=1", "unknown option"), ("U=cubic", "not a value"), ("U", "expected KEY=value"),
                     ("", "empty"), ("U=deconv,U=nearest", "selects no")]:
        with pytest.raises(InputError, match=msg):
            parse_grid(bad)
