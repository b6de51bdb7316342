"""fpforensics: zero-shot attribution of AI-generated images to their source model.

The front door (imported on first use, so ``import fpforensics`` stays fast)::

    import fpforensics as fpt

    ext = fpt.load_extractor("default")                  # the shipped extractor (or "spectral", a checkpoint)
    gallery = fpt.Gallery.open("gallery.h5", create=True)
    gallery.add("sdxl", ["sdxl_images/"], extractor=ext)  # enroll a model from its images
    result = fpt.identify(["query.png"], gallery, extractor=ext)
    print(result.results[0].verdict.text)                # "attributed to sdxl", "unknown (...)", ...
    print(fpt.verify("a.png", "b.png", extractor=ext).verdict)
    print(fpt.verify_model("query.png", "sdxl", gallery, extractor=ext).verdict)

Also ``embed`` (fingerprints of images), ``cluster`` (images grouped by unknown source),
``synthesize`` (the pool of synthetic models), ``train_extractor``, ``calibrate_extractor``
(operating points stored in a checkpoint), ``write_report`` (HTML) and ``evaluate`` (the papers'
protocols). The ``fpt`` command calls exactly these functions. Stages, in the order the data
flows: ``images`` -> ``residual`` -> ``spectrum`` -> ``extractor`` -> ``embedding`` -> ``gallery``
-> ``verdict``; beside them ``manifpt``, ``ffd``, ``cluster``, ``evaluation`` and ``synthesis``.
"""

from __future__ import annotations

from importlib import import_module
from typing import Any

__version__ = "0.5.0"

_API = {"load_extractor": "fpforensics.extractor", "embed": "fpforensics.api", "Gallery": "fpforensics.gallery",
        "identify": "fpforensics.api", "verify": "fpforensics.api", "verify_model": "fpforensics.api",
        "calibrate_extractor": "fpforensics.api", "write_report": "fpforensics.api", "DEFAULTS": "fpforensics.defaults",
        "cluster": "fpforensics.workflows", "synthesize": "fpforensics.workflows",
        "train_extractor": "fpforensics.workflows", "evaluate": "fpforensics.workflows"}

__all__ = ["__version__", *_API]


def __getattr__(name: str) -> Any:
    if name in _API:
        value = getattr(import_module(_API[name]), name)
        globals()[name] = value
        return value
    raise AttributeError(f"module 'fpforensics' has no attribute '{name}'")


def __dir__() -> list[str]:
    return sorted(__all__)
