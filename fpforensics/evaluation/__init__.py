"""Beside the stages, evaluation (``fpt eval``): the papers' protocols, the registry of protocols, reports and figures.

Modules: ``dataset`` (what is evaluated and how), ``protocols`` (identification, verification,
embedding quality, open set: each registered in :data:`PROTOCOLS`), ``run`` (embedding passes,
protocols, ``report.json``), ``figures``, ``synthetic`` (the
held-out synthetic benchmark), ``manifpt`` (the ManiFPT attributor scored on the same splits).
The perturbations of the robustness sweep are :mod:`fpforensics.perturbations`, shared with training.

A new protocol is one function ``(embeddings, labels, settings) -> result`` decorated with
``@PROTOCOLS.register("name")``; its result (a dict, or an object with ``to_dict``) appears in
``report.json`` for every extractor and perturbation.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from fpforensics.registry import Registry

PROTOCOLS: Registry[Callable[..., Any]] = Registry(
    "evaluation protocol", modules=("fpforensics.evaluation.protocols",),
    builtins=("identification", "verification", "embedding_quality", "open_set"))
