"""The one way to save and load weight files.

A checkpoint is a plain dict of tensors and simple values, tagged with ``fpt_kind`` (``dncnn``,
``extractor``, ...). Loading always uses ``torch.load(weights_only=True)``: a foreign or
malicious pickle is refused, never executed.
"""

from __future__ import annotations

import hashlib
import pickle
import warnings
import zipfile
from pathlib import Path
from typing import Any

import torch

from fpforensics import __version__
from fpforensics.errors import IncompatibleError, InputError
from fpforensics.io.store import EMPTY, atomic_file, check_output, check_writable, file_kind


def save_checkpoint(payload: dict[str, Any], path: str | Path, kind: str) -> Path:
    """Atomically write ``payload`` (tagged with ``kind`` and the tool version) to ``path``."""
    path = check_writable(path)
    payload = {**payload, "fpt_kind": kind, "tool_version": __version__}
    with atomic_file(path) as tmp:
        torch.save(payload, tmp)
    return path


def check_checkpoint_output(out: str | Path, kind: str, resume: bool = False, overwrite: bool = False,
                            log: str | Path | None = None) -> None:
    """Before any training: ``out`` (a checkpoint of ``kind``) and its ``log`` can be written, and replace nothing
    fpt did not write. An existing one of the same kind needs ``resume`` (continue it) or ``overwrite`` (start over)."""
    if resume and overwrite:
        raise InputError("--resume and --overwrite exclude each other")
    check_output(out, kind, overwrite=overwrite, append=resume,
                 exists_hint="pass --resume to continue it or --overwrite to start over")
    if log is not None:
        check_output(log, "training-log", overwrite=overwrite, append=resume,
                     exists_hint="pass --resume to continue its run, --overwrite to start over, or another --log")


def safe_torch_load(path: str | Path, what: str = "weights file", map_location: str | torch.device = "cpu") -> Any:
    """``torch.load(weights_only=True)`` with one-line errors: the one place any weight file is read.

    A pickle that holds anything but tensors and plain containers is refused, never executed.
    """
    path = Path(path)
    if not path.exists():
        raise InputError(f"{path}: no such {what}")
    if path.is_dir():
        raise InputError(f"{path}: is a folder, expected a {what}")
    try:
        with warnings.catch_warnings():  # torch warns about pickle protocols on foreign files; the error says enough
            warnings.simplefilter("ignore")
            return torch.load(path, map_location=map_location, weights_only=True)
    except pickle.UnpicklingError as exc:
        if "weights_only" in str(exc) or "Weights only" in str(exc):
            reason = "it holds objects other than tensors; refused, not executed"
        else:
            reason = "corrupt, or not a torch file"
    except (RuntimeError, zipfile.BadZipFile, EOFError) as exc:
        reason = "truncated or corrupt" if "zip" in str(exc).lower() or isinstance(exc, EOFError) else "corrupt"
    except Exception:  # torch raises many other types for foreign files
        reason = "not a torch file"
    other = file_kind(path)  # one of fpt's other files (a gallery, a pool, ...) is named as such
    if other not in (None, EMPTY):
        raise InputError(f"{path}: is an fpt '{other}' file, not the {what} expected here")
    raise InputError(f"{path}: not a loadable {what} ({reason})")


def load_checkpoint(path: str | Path, kind: str | None = None, map_location: str | torch.device = "cpu") -> dict[str, Any]:
    """Load a checkpoint safely; refuse files that are not fpforensics checkpoints of ``kind``."""
    payload = safe_torch_load(path, "fpforensics checkpoint", map_location)
    if not isinstance(payload, dict) or "fpt_kind" not in payload:
        raise IncompatibleError(f"{path}: not an fpforensics checkpoint (no fpt_kind tag)")
    if kind is not None and payload["fpt_kind"] != kind:
        raise IncompatibleError(f"{path}: is a '{payload['fpt_kind']}' checkpoint, expected '{kind}'")
    return payload


def state_dict_digest(state_dict: dict[str, torch.Tensor], length: int = 12) -> str:
    """Short content hash of a set of weights: the identity of a trained network."""
    h = hashlib.sha256()
    for key in sorted(state_dict):
        t = state_dict[key]
        h.update(key.encode())
        if isinstance(t, torch.Tensor):
            h.update(t.detach().cpu().contiguous().float().numpy().tobytes())
    return h.hexdigest()[:length]
