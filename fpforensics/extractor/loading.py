"""Any extractor checkpoint, trained or fused: the one place that tells them apart when loading.

Apart from :mod:`~fpforensics.extractor.trained` and :mod:`~fpforensics.extractor.fused` because a
fused extractor is made of trained ones: the loader needs both, and neither needs the other's loader.
"""

from __future__ import annotations

from pathlib import Path

from fpforensics.checkpoints import load_checkpoint
from fpforensics.extractor.base import Extractor
from fpforensics.extractor.fused import FusedExtractor
from fpforensics.extractor.network import FUSED_KEY
from fpforensics.extractor.trained import TrainedExtractor


def load_trained_extractor(path: str | Path) -> Extractor:
    """Any extractor checkpoint: a trained extractor, or a fused one (:mod:`fpforensics.extractor.fused`)."""
    ckpt = load_checkpoint(path, kind="extractor")
    if FUSED_KEY in ckpt:
        return FusedExtractor.from_payload(ckpt, path)
    return TrainedExtractor.from_payload(ckpt, path)
