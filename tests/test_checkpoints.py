import os
import pickle

import pytest
import torch

from fpforensics.checkpoints import load_checkpoint, safe_torch_load, save_checkpoint
from fpforensics.errors import IncompatibleError, InputError


class _Evil:
    def __reduce__(self):
        return (os.system, ("touch PWNED",))


def test_round_trip_and_kind(tmp_path):
    path = save_checkpoint({"state_dict": {"w": torch.ones(2)}}, tmp_path / "c.pt", "dncnn")
    assert torch.equal(load_checkpoint(path, "dncnn")["state_dict"]["w"], torch.ones(2))
    with pytest.raises(IncompatibleError, match="is a 'dncnn' checkpoint, expected 'extractor'"):
        load_checkpoint(path, "extractor")


def test_malicious_pickle_is_refused_not_executed(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    with open("evil.pt", "wb") as f:
        pickle.dump({"x": _Evil()}, f)
    with pytest.raises(InputError, match="refused, not executed"):
        safe_torch_load("evil.pt")
    assert not (tmp_path / "PWNED").exists()


def test_truncated_and_foreign_files(tmp_path):
    good = save_checkpoint({"state_dict": {"w": torch.zeros(1000)}}, tmp_path / "g.pt", "extractor")
    (tmp_path / "t.pt").write_bytes(good.read_bytes()[:2000])
    (tmp_path / "j.pt").write_text("junk")
    with pytest.raises(InputError, match="truncated or corrupt") as info:
        load_checkpoint(tmp_path / "t.pt")
    assert "\n" not in str(info.value)
    with pytest.raises(InputError, match="not a torch file"):
        load_checkpoint(tmp_path / "j.pt")
    with pytest.raises(InputError, match="no such"):
        load_checkpoint(tmp_path / "missing.pt")


def test_another_fpt_file_is_named_by_its_kind(tmp_path):
    """A gallery or an embeddings file given where a checkpoint goes is called what it is, not a bad pickle."""
    import numpy as np

    from fpforensics.gallery import Gallery

    gallery = tmp_path / "g.db"
    Gallery.open(gallery, create=True).enroll("m", np.eye(2, 8, dtype=np.float32), ["a", "b"], "X")
    with pytest.raises(InputError, match="is an fpt 'gallery' file, not the fpforensics checkpoint expected here"):
        load_checkpoint(gallery, "extractor")
