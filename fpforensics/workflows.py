"""Front-door functions for the long jobs: grouping a folder by source, building a pool, training, evaluating.

They follow :mod:`fpforensics.api`'s rules (files and folders in, defaults from
:data:`~fpforensics.defaults.DEFAULTS`, inputs checked before any work, progress through
callbacks) and are exported at the package's top like the rest of the front door.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from fpforensics.defaults import DEFAULTS
from fpforensics.embedding.embed import OnImage, OnSkip, Paths, embed
from fpforensics.errors import InputError
from fpforensics.extractor import load_extractor
from fpforensics.gallery import Gallery


@dataclass
class Clustered:
    """Images grouped by fingerprint (``fpt cluster``): ``clustering.labels[i]`` is the group of ``paths[i]``.

    ``groups[g]`` is group ``g``'s nearest enrolled model and verdict (a
    :class:`~fpforensics.cluster.GroupMatch`); ``gallery`` is the gallery that named them (None:
    groups not named); ``enrolled[g]`` the model name group ``g`` was enrolled as.
    """

    paths: list[str]
    embeddings: Any  # (N, D) L2-normalized
    extractor: str | None  # identity (None: a bare .npy file)
    clustering: Any  # fpforensics.cluster.Clustering
    groups: list
    gallery: Gallery | None
    gallery_path: Path | None
    enrolled: list[str | None]
    found: int
    skipped: list = field(default_factory=list)
    enroll_prefix: str | None = None

    @property
    def threshold(self) -> float | None:
        return self.gallery.threshold if self.gallery is not None else None

    def members(self, group: int) -> list[str]:
        return [self.paths[r] for r in self.clustering.members(group)]

    def examples(self, group: int, n: int) -> list[str]:
        """The ``n`` members closest to the group's fingerprint, closest first."""
        from fpforensics.cluster import typical_members

        return [self.paths[r] for r in typical_members(self.embeddings, self.clustering, group, n)]

    @property
    def unplaced(self) -> list[str]:
        return [self.paths[r] for r in self.clustering.unplaced]


def cluster(inputs: Paths | None = None, embeddings: str | Path | None = None, k: int | None = None,
            min_size: int | None = None, threshold: float | None = None, method: str = "auto",
            gallery: Gallery | str | Path | None = None, enroll_prefix: str | None = None,
            extractor: Any = DEFAULTS.extractor, grid: int = DEFAULTS.grid, batch_size: int = DEFAULTS.embed_batch_size,
            device: Any = "auto", precision: str = DEFAULTS.precision, on_start: OnImage = None,
            on_image: OnImage = None, on_skip: OnSkip = None, warn: Callable[[str], None] | None = None) -> Clustered:
    """Group images (files and folders, or an ``fpt embed`` file) by fingerprint without labels.

    Each group is named after its nearest enrolled model of ``gallery`` when most of its images
    are identified as that model, else "unknown source" (:mod:`fpforensics.cluster`). ``gallery``
    None looks for the default gallery and skips naming (with ``warn``) if it belongs to another
    extractor; a gallery given, or ``enroll_prefix``, must fit. ``enroll_prefix`` enrolls group
    ``g`` as model ``PREFIX-g`` (1 = largest); names already taken are refused before any work.
    """
    from fpforensics.cluster import DEFAULT_MIN_SIZE, check_options, cluster_embeddings, name_groups
    from fpforensics.errors import IncompatibleError
    from fpforensics.gallery import gallery_path
    from fpforensics.images.decode import list_images

    min_size = DEFAULT_MIN_SIZE if min_size is None else min_size
    check_options(k, min_size, method, threshold)  # every check that needs no embedding, before the embedding
    if enroll_prefix is not None:
        enroll_prefix = enroll_prefix.strip()
        if not enroll_prefix:
            raise InputError("--enroll-prefix cannot be empty")
    if bool(inputs) == (embeddings is not None):
        raise InputError("give image folders/files or --embeddings FILE (one of the two)")
    if embeddings is not None:
        from fpforensics.embedding.files import load_embeddings

        es = load_embeddings(embeddings)
        identity, dim, spec = es.extractor, int(es.embeddings.shape[1]), es.extractor_spec or ""
        grid = es.grid or grid
        n_found = len(es.paths)
    else:
        n_found = len(list_images(inputs))
    if k is not None and k > n_found:
        raise InputError(f"--k {k} is more than the {n_found} image(s) found")

    explicit = gallery is not None or enroll_prefix is not None
    g, path = (gallery, gallery.path) if isinstance(gallery, Gallery) else (None, None)
    if g is None:
        path = gallery_path(gallery, for_writing=enroll_prefix is not None)
        if enroll_prefix is not None:
            from fpforensics.io.store import check_writable

            check_writable(path)
            g = Gallery.open(path, create=True)
            g.check_output()  # a gallery (or nothing yet), writable, lock included: before any work
        elif path.exists():
            g = Gallery.open(path)
    if g is not None and enroll_prefix is not None:
        _refuse_taken(g, enroll_prefix)
    ext = None
    if embeddings is None:
        ext = load_extractor(extractor, device) if isinstance(extractor, str | Path) else extractor
        identity, dim = ext.identity, ext.embedding_dim or None
        spec = str(extractor) if isinstance(extractor, str | Path) else ""
    if g is not None and identity is None:
        if explicit:
            raise InputError(f"{embeddings}: a .npy file does not say which extractor made it, so it cannot be "
                             "compared with a gallery (write .h5 with `fpt embed`)")
        g = None
    if g is not None and len(g):
        try:
            g.check_compatible(identity, dim)
        except IncompatibleError as exc:
            if explicit:
                raise
            if warn:
                warn(f"groups are not named: {exc}")
            g = None

    if embeddings is None:
        e = embed(inputs, ext, grid, batch_size, device, precision, on_start=on_start, on_image=on_image,
                  on_skip=on_skip)
        paths, emb, skipped, found = [str(p) for p in e.paths], e.embeddings, e.skipped, e.found
    else:
        paths, emb, skipped, found = list(es.paths), es.embeddings, [], n_found
    if k is not None and k > len(paths):
        raise InputError(f"--k {k} is more than the {len(paths)} readable image(s)")
    res = cluster_embeddings(emb, k=k, min_size=min_size, method=method, threshold=threshold)
    named = g if g is not None and len(g) else None
    names, fps = named.fingerprints() if named is not None else ([], None)
    matches = name_groups(emb, res, names, fps, named.threshold if named is not None else None)

    enrolled: list[str | None] = [None] * res.n_groups
    if enroll_prefix is not None and g is not None:
        _refuse_taken(g, enroll_prefix, [f"{enroll_prefix}-{i + 1}" for i in range(res.n_groups)])
        for i in range(res.n_groups):
            rows = res.members(i)
            enrolled[i] = g.enroll(f"{enroll_prefix}-{i + 1}", emb[rows], [paths[r] for r in rows], identity,
                                   grid=grid, extractor_spec=spec).name
        if not res.n_groups and warn:
            warn("no group to enroll: every image is unplaced")
    return Clustered(paths, emb, identity, res, matches, named, path, enrolled, found, list(skipped), enroll_prefix)


def _refuse_taken(g: Gallery, prefix: str, names: list[str] | None = None) -> None:
    """Enrolling groups must not add images to an existing model: refuse names already in the gallery."""
    import re

    pattern = re.compile(re.escape(prefix) + r"-\d+")
    taken = [n for n in g.names() if (n in names if names is not None else pattern.fullmatch(n))]
    if taken:
        raise InputError(f"{g.path} already has model(s) {', '.join(taken[:5])}{' ...' if len(taken) > 5 else ''}: "
                         "choose another --enroll-prefix")


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
    from fpforensics.io.store import check_output, clean_stale_temporaries
    from fpforensics.sharding import shard_output
    from fpforensics.synthesis.architectures import parse_grid
    from fpforensics.synthesis.build import parts_dir, synthesize_pool
    from fpforensics.synthesis.pool import POOL_KIND
    from fpforensics.synthesis.training import RealData, TrainConfig, resolve_backend

    specs = parse_grid(arch_grid)  # every check before any work: grid, settings, output, real images
    if seeds < 1:
        raise InputError(f"--seeds must be at least 1 (got {seeds})")
    cfg = TrainConfig(**settings)
    cfg.validate()
    out = check_output(shard_output(Path(out), shard, "pool"), POOL_KIND, append=True, lock=True)  # a pool is extended
    clean_stale_temporaries(parts_dir(out))
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
                    precision: str = DEFAULTS.precision, calibrate: bool = True, **settings: Any):
    """Train a fingerprint extractor on a pool of synthetic models (METHOD 1.3), with zero-shot validation.

    ``preset`` (``paper`` | ``tiny``) then ``settings``: fields of
    :class:`~fpforensics.extractor.training.ExtractorConfig` (None = the preset's), and
    ``batch_size``, which sets P = batch / K. ``on_plan(config, photos)`` is called once the inputs
    are checked, before any training. ``calibrate``: store the operating points fitted on the run's
    held-out models in the checkpoint at the end (as ``fpt calibrate`` does). Returns a
    :class:`~fpforensics.extractor.training.TrainResult`.
    """
    from fpforensics.device import resolve_device
    from fpforensics.extractor.config import make_config
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
                 log_path=log, callbacks=callbacks, precision=precision, calibrate=calibrate)


def evaluate(dataset: str | Path | None = None, extractors: Sequence[str] = (), out: str | Path = "report",
             pool: str | Path | None = None, real: str | Path | None = None, holdout: str | None = None,
             manifpt: Sequence[str] = (), pool_images: int = DEFAULTS.pool_images,
             pool_models: int = DEFAULTS.pool_models, device: Any = "auto", progress=None, warn=None, info=None,
             extra: dict | None = None, overwrite: bool = False, **settings: Any):
    """The papers' protocols for extractors (the two baselines always added) on ``DATASET/<model>/<images>``.

    With ``pool`` (+ ``real``, ``holdout``) the dataset is first synthesized from held-out
    synthetic models. ``manifpt`` spaces (``rgb``, ``freq``; needs ``real``) add the ManiFPT
    attributor on the same splits. ``settings`` are :class:`~fpforensics.evaluation.dataset.EvalSettings`
    fields. ``progress(what, total)`` returns an ``advance(n)`` callback; ``warn`` and ``info``
    receive messages. Writes ``OUT/report.json`` (and figures; an earlier report of fpt's is replaced only
    with ``overwrite``); returns an :class:`~fpforensics.evaluation.run.EvalOutput`.
    """
    tell = info or (lambda _msg: None)
    from fpforensics.device import resolve_device
    from fpforensics.evaluation.dataset import EvalDataset, EvalSettings
    from fpforensics.evaluation.run import prepare_out, resolve_extractors, run_report

    cfg = EvalSettings(**settings)
    cfg.validate()
    _check_eval_inputs(dataset, pool, real, holdout, manifpt)
    prepare_out(Path(out), overwrite)  # writable, and no report to replace without overwrite: before any work
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
                      real=real, overwrite=overwrite)


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
