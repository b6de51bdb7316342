"""The front door of the library: one function per task, the same ones the ``fpt`` commands call.

Every function takes files and folders, resolves devices and defaults (:data:`fpforensics.defaults.DEFAULTS`),
checks its inputs before any work, and raises :class:`~fpforensics.errors.FptError` subclasses
for anything the caller can fix. Progress is reported through optional callbacks.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from fpforensics.defaults import DEFAULTS
from fpforensics.embedding.embed import Embeddings, OnImage, OnSkip, Paths, embed
from fpforensics.errors import InputError
from fpforensics.extractor import load_extractor
from fpforensics.gallery import Gallery, default_gallery_path

__all__ = ["Embeddings", "Gallery", "Identified", "Verified", "embed", "evaluate", "identify", "load_extractor",
           "synthesize", "train_extractor", "verify"]


@dataclass
class Identified:
    """The verdict for each embedded image: ``identification.ranking(i)`` is the ranking of ``embedded.paths[i]``."""

    embedded: Embeddings
    identification: Any  # fpforensics.verdict.Identification
    gallery: Gallery


def identify(inputs: Paths, gallery: Gallery | str | Path | None = None, extractor: Any = DEFAULTS.extractor,
             top_k: int = DEFAULTS.top_k, threshold: float | None = None, grid: int = DEFAULTS.grid,
             batch_size: int = DEFAULTS.embed_batch_size, device: Any = "auto", precision: str = DEFAULTS.precision,
             on_start: OnImage = None, on_image: OnImage = None, on_skip: OnSkip = None) -> Identified:
    """1:N identification: rank the gallery's models for each image; below the threshold, "unknown model".

    ``gallery``: a :class:`Gallery` or its path (default: :func:`~fpforensics.gallery.default_gallery_path`).
    ``threshold`` None takes the gallery's calibrated one. The extractor must be the gallery's.
    """
    from fpforensics.verdict.match import identify as rank

    g = gallery if isinstance(gallery, Gallery) else Gallery.open(gallery or default_gallery_path())
    if not len(g):
        raise InputError(f"{g.path}: the gallery is empty (enroll models with `fpt gallery add NAME IMAGES`)")
    ext = load_extractor(extractor, device) if isinstance(extractor, str | Path) else extractor
    g.check_compatible(ext.identity, ext.embedding_dim or None)
    if top_k < 1:
        raise InputError(f"--top-k must be at least 1 (got {top_k})")
    e = embed(inputs, ext, grid, batch_size, device, precision, on_start=on_start, on_image=on_image, on_skip=on_skip)
    return Identified(e, rank(e.embeddings, g, top_k=top_k, threshold=threshold), g)


@dataclass
class Verified:
    """1:1 verdict: cosine of the two sides' (mean) embeddings against the threshold."""

    cosine: float
    threshold: float
    extractor: str
    images: tuple[int, int]
    skipped: int
    note: str | None = None

    @property
    def same_model(self) -> bool:
        return self.cosine >= self.threshold

    @property
    def verdict(self) -> str:
        return "same model" if self.same_model else "different models"


def verify(a: str | Path, b: str | Path, extractor: Any = DEFAULTS.extractor, threshold: float | None = None,
           grid: int = DEFAULTS.grid, batch_size: int = DEFAULTS.embed_batch_size, device: Any = "auto",
           precision: str = DEFAULTS.precision, on_start: OnImage = None, on_image: OnImage = None,
           on_skip: OnSkip = None) -> Verified:
    """Same model or not: an image (or a folder: its images' mean embedding) against another.

    ``threshold`` None is the paper's 0.81, which belongs to the paper's extractor; ``note`` says so
    when a training-free extractor is used.
    """
    from fpforensics.extractor.baselines import PixelExtractor, SpectralExtractor
    from fpforensics.metrics import l2_normalize
    from fpforensics.verdict.match import verify as compare

    ext = load_extractor(extractor, device) if isinstance(extractor, str | Path) else extractor
    sides = [embed([side], ext, grid, batch_size, device, precision, on_start=on_start, on_image=on_image,
                   on_skip=on_skip) for side in (a, b)]
    thr = DEFAULTS.verify_threshold if threshold is None else float(threshold)
    res = compare(*(l2_normalize(s.embeddings.mean(axis=0)) for s in sides), thr)
    note = None
    if threshold is None and isinstance(ext, SpectralExtractor | PixelExtractor):
        note = (f"0.81 is the paper's threshold for its trained extractor; '{ext.identity}' is a different "
                "(training-free) extractor, so pass a --threshold calibrated for it (`fpt gallery calibrate`)")
    return Verified(res.cosine, thr, ext.identity, (len(sides[0].paths), len(sides[1].paths)),
                    sum(len(s.skipped) for s in sides), note)


def synthesize(real: Paths, out: str | Path, arch_grid: str = "all", seeds: int = DEFAULTS.synth_seeds,
               device: Any = "auto", shard: tuple[int, int] = (0, 1), pack_size: int | None = None,
               backend: str = "auto", precision: str = DEFAULTS.precision, on_plan: Callable[[dict], None] | None = None,
               on_start=None, on_model=None, on_skip: OnSkip = None, **settings: Any):
    """Train the pool of synthetic models ``arch_grid x seeds`` into ``out`` (resumable; METHOD 1.2).

    ``settings`` are :class:`~fpforensics.synthesis.training.TrainConfig` fields (``eta``,
    ``max_steps``, ``batch_size``, ``lr``, ``crop``, ...). With several shards and ``out`` a folder,
    the shard's file goes inside it. ``on_plan(plan)`` is called once the real images are loaded,
    before training. Returns the run's :class:`~fpforensics.synthesis.build.SynthesisSummary`.
    """
    from fpforensics.device import resolve_device, resolve_precision
    from fpforensics.io.store import check_writable
    from fpforensics.sharding import shard_output
    from fpforensics.synthesis.architectures import parse_grid
    from fpforensics.synthesis.build import synthesize_pool
    from fpforensics.synthesis.training import RealData, TrainConfig, resolve_backend

    specs = parse_grid(arch_grid)  # every check before any work: grid, settings, output, real images
    if seeds < 1:
        raise InputError(f"--seeds must be at least 1 (got {seeds})")
    cfg = TrainConfig(**settings)
    cfg.validate()
    out = check_writable(shard_output(Path(out), shard, "pool"))
    if not real:
        raise InputError("--real is required: real images for the models to reconstruct")
    dev = resolve_device(device)
    resolve_backend(backend, dev)
    precision = resolve_precision(precision, dev)
    data = real if isinstance(real, RealData) else RealData.from_folder(real, max(cfg.crop, cfg.calib_crop),
                                                                         on_skip=on_skip)
    if on_plan:
        on_plan({"out": out, "real_images": len(data.images), "fingerprint": data.fingerprint,
                 "architectures": len(specs), "seeds": seeds, "shard": shard, "precision": precision})
    return synthesize_pool(data, out, specs, range(seeds), cfg, pack_size=pack_size, device=dev, shard=shard,
                           backend=backend, on_start=on_start, on_model=on_model, precision=precision)


def train_extractor(pool: Any, real: Paths, out: str | Path, preset: str = "paper", device: Any = "auto",
                    resume: bool = False, overwrite: bool = False, init: str | Path | None = None,
                    log: str | Path | None = None, callbacks: Any = None, on_plan: Callable[[Any, int], None] | None = None,
                    precision: str = DEFAULTS.precision, **settings: Any):
    """Train a fingerprint extractor on a pool of synthetic models (METHOD 1.3), with zero-shot validation.

    ``preset`` (``paper`` | ``tiny``) then ``settings``: fields of
    :class:`~fpforensics.extractor.training.ExtractorConfig` (None = the preset's), and
    ``batch_size``, which sets P = batch / K. ``on_plan(config, photos)`` is called once the inputs
    are checked, before any training. Returns a :class:`~fpforensics.extractor.training.TrainResult`.
    """
    from fpforensics.device import resolve_device
    from fpforensics.extractor.training import make_config
    from fpforensics.extractor.training import train_extractor as train
    from fpforensics.images.decode import list_images
    from fpforensics.synthesis.pool import open_pool

    batch_size = settings.pop("batch_size", None)
    if batch_size is not None:  # the paper's batch of 200 images: P models x K images each
        k = settings.get("k") or make_config(preset).k
        if batch_size % k or batch_size // k < 2:
            raise InputError(f"--batch-size {batch_size} must be a multiple of K={k} with at least 2 models")
        if settings.get("p") is not None and settings["p"] * k != batch_size:
            raise InputError("give --batch-size or --p, not conflicting values of both")
        settings.update(p=batch_size // k, k=k)
    cfg = make_config(preset, **settings)
    paths = list_images(real)
    pool = open_pool(pool)  # a missing or foreign pool fails here, before any work
    if on_plan:
        on_plan(cfg, len(paths))
    return train(pool, paths, out, cfg, device=resolve_device(device), resume=resume, overwrite=overwrite, init=init,
                 log_path=log, callbacks=callbacks, precision=precision)


def evaluate(dataset: str | Path | None = None, extractors: Sequence[str] = (), out: str | Path = "report",
             pool: str | Path | None = None, real: str | Path | None = None, holdout: str | None = None,
             manifpt: Sequence[str] = (), pool_images: int = DEFAULTS.pool_images,
             pool_models: int = DEFAULTS.pool_models, device: Any = "auto", progress=None, warn=None, info=None,
             extra: dict | None = None, **settings: Any):
    """The papers' protocols for extractors (the two baselines always added) on ``DATASET/<model>/<images>``.

    With ``pool`` (+ ``real``, ``holdout``) the dataset is first synthesized from held-out
    synthetic models. ``manifpt`` spaces (``rgb``, ``freq``; needs ``real``) add the ManiFPT
    attributor on the same splits. ``settings`` are :class:`~fpforensics.evaluation.dataset.EvalSettings`
    fields. ``progress(what, total)`` returns an ``advance(n)`` callback; ``warn`` and ``info``
    receive messages. Writes ``OUT/report.json`` (and figures); returns an
    :class:`~fpforensics.evaluation.run.EvalOutput`.
    """
    tell = info or (lambda _msg: None)
    from fpforensics.device import resolve_device
    from fpforensics.evaluation.dataset import EvalDataset, EvalSettings
    from fpforensics.evaluation.run import resolve_extractors, run_report

    cfg = EvalSettings(**settings)
    cfg.validate()
    _check_eval_inputs(dataset, pool, real, holdout, manifpt)
    dev = resolve_device(device)
    entries = resolve_extractors(list(extractors), dev, warn=warn)
    tell("extractors: " + ", ".join(f"{e.label} = {e.identity}" for e in entries))
    extra = dict(extra or {})
    if pool is not None:
        from fpforensics.evaluation.synthetic import build_pool_dataset

        advance = None

        def on_total(n: int) -> None:
            nonlocal advance
            advance = progress("synthesizing held-out images", n) if progress else None

        dataset, meta = build_pool_dataset(pool, real, holdout, out, [e.spec for e in entries], pool_images,
                                           pool_models, cfg.seed, dev, on_total=on_total,
                                           on_images=lambda n: advance(n) if advance else None)
        extra.update(meta)
        tell(f"synthetic benchmark: {meta['synthetic_benchmark']['models']} held-out models written to {dataset}")
    ds = EvalDataset.from_folder(dataset, cfg, warn=warn)
    tell(f"dataset: {len(ds.names)} models, {len(ds.paths)} images")
    return run_report(ds, entries, cfg, out, dev, progress=progress, warn=warn, extra=extra, manifpt=list(manifpt),
                      real=real)


def _check_eval_inputs(dataset, pool, real, holdout, manifpt) -> None:
    if manifpt:
        from fpforensics.evaluation.manifpt import parse_spaces

        parse_spaces(list(manifpt))
        if real is None:
            raise InputError("--manifpt needs --real DIR (the real images whose manifold defines the artifacts)")
        if not Path(real).is_dir():
            raise InputError(f"--real {real}: no such folder")
        if pool is not None:
            raise InputError("--manifpt is for a DATASET folder, not --pool")
    if pool is None and (holdout is not None or (real is not None and not manifpt)):
        raise InputError("--holdout goes with --pool, and --real with --pool or --manifpt")
    if pool is not None and dataset is not None:
        raise InputError("give either DATASET or --pool, not both")
    if pool is None and dataset is None:
        raise InputError("missing DATASET (a folder with one subfolder per model), or use --pool")
    if pool is not None and (real is None or holdout is None):
        raise InputError("--pool needs --real DIR and --holdout (grid expression or 'checkpoint')")
