"""The front door of the library: one function per task, the same ones the ``fpt`` commands call.

This module holds attribution (embed, identify, verify, calibrate); the long jobs (cluster,
synthesize, train, evaluate) are in :mod:`fpforensics.workflows`. Both are exported at the top.

Every function takes files and folders, resolves devices and defaults (:data:`fpforensics.defaults.DEFAULTS`),
checks its inputs before any work, and raises :class:`~fpforensics.errors.FptError` subclasses
for anything the caller can fix. Progress is reported through optional callbacks.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from fpforensics.defaults import DEFAULTS
from fpforensics.embedding.embed import Embeddings, OnImage, OnSkip, Paths, embed
from fpforensics.errors import InputError
from fpforensics.extractor import load_extractor
from fpforensics.gallery import Gallery, default_gallery_path

__all__ = ["Embeddings", "Gallery", "Identified", "Verified", "calibrate_extractor", "embed", "identify", "load_extractor",
           "verify", "verify_model", "write_report"]


@dataclass
class Identified:
    """The verdict for each embedded image: ``results[i]`` is the verdict for ``embedded.paths[i]``.

    ``identification`` is the raw ranking (cosines); ``results`` apply every rule to it;
    ``notes`` are the lines that say which gallery, operating point and rules were used.
    """

    embedded: Embeddings
    identification: Any  # fpforensics.verdict.match.Identification
    gallery: Gallery
    results: list[Any] = field(default_factory=list)  # fpforensics.verdict.results.QueryResult
    operating_point: Any = None  # fpforensics.verdict.calibration.OperatingPoint
    margin_rule: Any = None
    galleries: list[str] = field(default_factory=list)  # what was searched, in words
    notes: list[str] = field(default_factory=list)


@dataclass
class GalleryChoice:
    """The galleries a query is matched against (the user's and/or the built-in one), and the line that says so."""

    galleries: list[Gallery]
    labels: list[str]
    note: str | None = None

    @property
    def primary(self) -> Gallery:
        return self.galleries[0]

    def fingerprints(self) -> tuple[list[str], Any]:
        """Every gallery's models; a built-in model whose name the user also enrolled is shown as ``NAME (built-in)``."""
        import numpy as np

        if len(self.galleries) == 1:
            names, fp = self.primary.fingerprints()
            return list(names), fp
        names, mats, taken = [], [], set()
        for g, label in zip(self.galleries, self.labels, strict=True):
            n, fp = g.fingerprints()
            names += [f"{m} ({label})" if m in taken else m for m in n]
            taken |= set(n)
            mats.append(fp)
        return names, np.concatenate(mats)

    def family(self, name: str) -> str | None:
        """The family recorded for model ``name`` (``Gallery.model_meta``), None when not recorded."""
        for g, label in zip(self.galleries, self.labels, strict=True):
            plain = name.removesuffix(f" ({label})")
            meta = getattr(g, "model_meta", None)
            if meta is not None and plain in g:
                try:
                    return (meta(plain) or {}).get("family") or None
                except Exception:  # noqa: BLE001 - a gallery without metadata has no family
                    return None
        return None


def choose_gallery(gallery: Gallery | str | Path | None = None, with_builtin: bool = False) -> GalleryChoice:
    """``--gallery G`` alone: G. Neither ``--gallery`` nor a user gallery file: the built-in reference gallery.
    ``with_builtin``: the given (or user) gallery and the built-in one together.
    """
    from fpforensics.gallery.builtin import builtin_gallery_path, open_builtin

    user: Gallery | None
    if isinstance(gallery, Gallery):
        user = gallery
    elif gallery is not None:  # the built-in file named as --gallery: opened read-only all the same
        same = Path(gallery).resolve() == builtin_gallery_path().resolve()
        user = Gallery.open(gallery, read_only=True) if same else Gallery.open(gallery)
    else:
        path = default_gallery_path()
        user = Gallery.open(path) if path.exists() else None
    builtin = open_builtin() if (with_builtin or user is None) else None
    if with_builtin and builtin is None:
        raise InputError("--with-builtin: this installation ships no built-in reference gallery")
    if user is None:
        if builtin is None:
            raise InputError(f"{default_gallery_path()}: no gallery here yet and no built-in reference gallery "
                             "(enroll a model with `fpt gallery add NAME IMAGES`, or pass --gallery)")
        return GalleryChoice([builtin], ["built-in"], f"gallery: the built-in reference gallery ({len(builtin)} models; "
                                                      "--gallery G to use your own)")
    if builtin is None:
        return GalleryChoice([user], [str(user.path)])
    return GalleryChoice([user, builtin], [str(user.path), "built-in"],
                         f"galleries: {user.path} ({len(user)} models) and the built-in reference gallery "
                         f"({len(builtin)} models)")


def _operating_point(calibration: Any, kind: str, threshold: str | float | None, max_false_match_rate: float | None,
                     gallery: Gallery | None = None) -> Any:
    """The threshold for ``kind`` scores: ``--threshold`` / ``--max-false-match-rate``, else the extractor's calibration.

    ``gallery`` (identification): ``--threshold gallery`` takes its own open-set threshold, and so
    does the default when the threshold was set there by hand or when the extractor stores no
    calibration (the gallery's threshold is fitted on its images, the paper's is not).
    """
    from fpforensics.verdict.calibration import CHOICES, GALLERY_CHOICES, OperatingPoint, resolve_operating_point

    cal = calibration.for_kind(kind) if calibration is not None else None
    g_cal = gallery.calibration if gallery is not None else None
    wants_gallery = isinstance(threshold, str) and threshold.strip().lower() == "gallery"
    default = threshold is None and max_false_match_rate is None
    if g_cal is not None and (wants_gallery or (default and (g_cal.source == "manual" or (
            cal is None and g_cal.source in ("calibrated", "single-model"))))):
        how = {"manual": "set by hand in the gallery (`fpt gallery calibrate --set`)",
               "calibrated": "the gallery's open-set threshold, fitted on its enrolled images",
               "single-model": "the gallery's threshold from its one model's images"}.get(g_cal.source,
                                                                                          "the gallery's threshold")
        if cal is None and not wants_gallery and g_cal.source != "manual":
            how += "; the extractor stores no calibration"
        return OperatingPoint("gallery", float(g_cal.threshold), cal.fmr_at(g_cal.threshold) if cal else None,
                              cal.fnmr_at(g_cal.threshold) if cal else None, how)
    if wants_gallery:
        raise InputError("--threshold gallery: the gallery has no threshold of its own yet")
    return resolve_operating_point(cal, threshold, max_false_match_rate,
                                   GALLERY_CHOICES if gallery is not None else CHOICES)


def _photo_cut(reference: Any, choice: GalleryChoice, photo_cut: Any) -> tuple[float | None, dict | None, str | None]:
    """The real-photo rule's cut for a gallery query: ``calibrated`` (the rule's own) or ``enrolled[:KEEP]``.

    Returns ``(cut or None for the rule's own, what it is as JSON, a note)``.
    """
    from fpforensics.verdict.realphoto import PhotoCut, enrolled_cut

    pc = PhotoCut.parse(photo_cut)
    if reference is None:
        if pc.name != "calibrated":
            raise InputError(f"--photo-cut {pc.label}: the extractor stores no real-photo rule to cut "
                             "(calibrate it with `fpt calibrate`)")
        return None, None, None
    rule = reference.rules["image-fingerprint"]
    if pc.name == "calibrated":
        return None, {"name": "calibrated", "cut": round(rule.cut, 6)}, None
    if len(choice.galleries) > 1:
        raise InputError(f"--photo-cut {pc.label}: fitted on one gallery's enrolled images; the built-in reference "
                         "gallery keeps fingerprints only, so leave out --with-builtin")
    sample = choice.primary.enrolled_sample()
    cut, info = enrolled_cut(reference, sample.embeddings, sample.labels, pc.keep, fingerprints=sample.fingerprints,
                             row_sums=sample.row_sums, row_counts=sample.row_counts)
    info = {"name": pc.label, **{k: (round(v, 6) if isinstance(v, float) else v) for k, v in info.items()}}
    note = (f"real-photo cut {cut:.4f} (enrolled: raised from the calibrated {rule.cut:.4f} to keep {pc.keep:.0%} of "
            f"the gallery's {info['images']} enrolled images, each scored without itself)" if info["raised"] else
            f"real-photo cut {cut:.4f} (enrolled: the calibrated cut already keeps {pc.keep:.0%} of the gallery's "
            f"{info['images']} enrolled images)")
    return (cut if info["raised"] else None), info, note


def enrollment_photo_check(gallery: Gallery, name: str, extractor: Any) -> dict | None:
    """Of model ``name``'s enrolled images, how many the extractor's real-photo rule calls camera photographs.

    Each is scored as a query would be (:func:`~fpforensics.verdict.realphoto.camera_like_enrolled`).
    None when the extractor has no real-photo rule or the gallery keeps fingerprints only.
    """
    from fpforensics.verdict.realphoto import camera_like_enrolled
    from fpforensics.verdict.stored import ExtractorCalibration

    ext = load_extractor(extractor, "cpu") if isinstance(extractor, str | Path) else extractor
    cal = ExtractorCalibration.of(ext)
    if cal is None or cal.real_reference is None or not gallery.has_image_embeddings:
        return None
    names, fps = gallery.fingerprints()
    return {"model": name, **camera_like_enrolled(cal.real_reference, gallery.embeddings(name), fps, names.index(name))}


def identify(inputs: Paths, gallery: Gallery | str | Path | None = None, extractor: Any = DEFAULTS.extractor,
             top_k: int = DEFAULTS.top_k, threshold: str | float | None = None, grid: int = DEFAULTS.grid,
             batch_size: int = DEFAULTS.embed_batch_size, device: Any = "auto", precision: str = DEFAULTS.precision,
             on_start: OnImage = None, on_image: OnImage = None, on_skip: OnSkip = None, *,
             max_false_match_rate: float | None = None, with_builtin: bool = False,
             photo_cut: str | None = None) -> Identified:
    """1:N identification: rank the gallery's models for each image and give each image a verdict.

    ``gallery``: a :class:`Gallery` or its path; None: the user's gallery
    (:func:`~fpforensics.gallery.default_gallery_path`) when it exists, else the built-in
    reference gallery; ``with_builtin`` adds the built-in one. ``threshold``: None (the extractor's
    calibrated image-to-fingerprint threshold), a cosine, ``paper``, ``calibrated``, ``fmr:RATE``
    or ``gallery``; or ``max_false_match_rate``. ``photo_cut``: the real-photo rule's cut,
    ``calibrated`` (default) or ``enrolled[:KEEP]`` (raised so that KEEP of the gallery's enrolled
    images pass; :func:`~fpforensics.verdict.realphoto.enrolled_cut`). Verdicts: attributed,
    ambiguous, unknown (also "closest to camera photographs"), insufficient signal. The extractor
    must be the gallery's.
    """
    from fpforensics.verdict.match import identify as search
    from fpforensics.verdict.results import extractor_ref, judge_identification
    from fpforensics.verdict.stored import ExtractorCalibration

    choice = choose_gallery(gallery, with_builtin)
    for g in choice.galleries:
        if not len(g):
            raise InputError(f"{g.path}: the gallery is empty (enroll models with `fpt gallery add NAME IMAGES`)")
    ext = load_extractor(extractor, device) if isinstance(extractor, str | Path) else extractor
    for g in choice.galleries:
        g.check_compatible(ext.identity, ext.embedding_dim or None)
    if top_k < 1:
        raise InputError(f"--top-k must be at least 1 (got {top_k})")
    cal = ExtractorCalibration.of(ext)
    op = _operating_point(cal, "image-fingerprint", threshold, max_false_match_rate, choice.primary)
    fp_cal = cal.fingerprint if cal is not None else None
    reference = cal.real_reference if cal is not None else None
    cut, cut_info, cut_note = _photo_cut(reference, choice, photo_cut)  # refused before any image is embedded
    e = embed(inputs, ext, grid, batch_size, device, precision, on_start=on_start, on_image=on_image, on_skip=on_skip,
              signal=True)
    target = choice.primary if len(choice.galleries) == 1 else choice.fingerprints()
    ident = search(e.embeddings, target, top_k=max(top_k, 2), threshold=op.threshold)
    margin_rule = fp_cal.margin if fp_cal is not None else None
    results = judge_identification(e.paths, e.embeddings, ident.names, ident.indices, ident.scores, op, fp_cal,
                                   margin_rule, reference, e.signal, extractor_ref(ext), top_k, choice.family,
                                   camera_cut=cut, camera_cut_info=cut_info)
    notes = [n for n in (choice.note, op.describe(), margin_rule.describe() if margin_rule else None,
                         reference.describe() if reference else None, cut_note) if n]
    return Identified(e, ident, choice.primary, results, op, margin_rule, choice.labels, notes)


def write_report(result: Identified, path: str | Path, title: str = "fpt identify report",
                 overwrite: bool = False) -> Path:
    """One self-contained HTML file for an :func:`identify` result (:mod:`fpforensics.verdict.html_report`).

    An existing file is replaced only when it is an fpt report and ``overwrite`` is set."""
    from fpforensics.io.store import check_output
    from fpforensics.verdict.html_report import REPORT_KIND, ReportEntry, write_html_report

    entries = [ReportEntry(q.path, q.ranking, q.verdict, result.operating_point.threshold, None, q.provenance,
                           q.signal.stats if q.signal else {}) for q in result.results]
    return write_html_report(check_output(path, REPORT_KIND, overwrite), entries, title=title, notes=result.notes)


@dataclass
class Verified:
    """1:1 verdict: cosine of the two sides' (mean) embeddings, the rules, and the provenance of every image."""

    cosine: float
    threshold: float
    extractor: str
    images: tuple[int, int]
    skipped: int
    note: str | None = None
    operating_point: Any = None
    decision: Any = None  # fpforensics.verdict.results.PairVerdict
    probability: float | None = None
    signal: list[list[Any]] = field(default_factory=list)  # per side, a SignalCheck per image
    real_photo: list[Any] = field(default_factory=list)  # per side, a CameraCheck (or None)
    provenance: dict = field(default_factory=dict)
    model: str | None = None  # verify --model: the enrolled model B is
    gallery: str | None = None
    notes: list[str] = field(default_factory=list)

    @property
    def same_model(self) -> bool:
        if self.decision is not None:
            return self.decision.kind == "same model"
        return self.cosine >= self.threshold

    @property
    def verdict(self) -> str:
        if self.decision is not None:
            return self.decision.kind
        return "same model" if self.same_model else "different models"


def _side(e: Embeddings) -> tuple[Any, list[Any]]:
    """A side's mean embedding over its images with enough signal (all of them when none has)."""
    from fpforensics.metrics import l2_normalize

    ok = e.signal_ok
    rows = e.embeddings[ok] if ok.any() else e.embeddings
    return l2_normalize(rows.mean(axis=0)), list(e.signal or [])


def _pair_result(sides: list[Embeddings], vectors: list[Any], checks: list[list[Any]], labels: list[str], ext: Any,
                 cal: Any, op: Any, kind: str, note: str | None, model: str | None = None,
                 gallery: str | None = None, extra_notes: Sequence[str] = (), camera_cut: float | None = None,
                 camera_cut_info: dict | None = None) -> Verified:
    """Score, judge and cite a 1:1 comparison of ``vectors`` (the shared tail of :func:`verify` and :func:`verify_model`)."""
    from fpforensics.verdict.match import verify as compare
    from fpforensics.verdict.provenance import Provenance
    from fpforensics.verdict.results import extractor_ref, judge_pair

    res = compare(vectors[0], vectors[1], op.threshold)
    reference = cal.real_reference if cal is not None else None
    cameras = [reference.check(v[None], [res.cosine], kind, cut=camera_cut)[0] if reference is not None else None
               for v in vectors[:len(sides)]]
    cameras += [None] * (2 - len(cameras))
    signals = [next((c for c in s if not c.ok), None) if s and not any(c.ok for c in s) else None for s in checks]
    signals += [None] * (2 - len(signals))
    decision = judge_pair(res.cosine, op, signals, cameras, labels)
    score_cal = cal.for_kind(kind) if cal is not None else None
    prob = float(score_cal.probability(res.cosine)) if score_cal is not None else None
    ref = extractor_ref(ext)
    prov: dict = {}
    point = op.to_dict() if camera_cut_info is None else {**op.to_dict(), "real_photo_cut": camera_cut_info}
    for label, e in zip(("a", "b"), sides, strict=False):
        prov[label] = [Provenance.for_image(p, ref, point).to_dict() for p in e.paths]
    notes = [op.describe(), *extra_notes]
    if reference is not None:
        notes.append(reference.describe(kind))
    return Verified(res.cosine, op.threshold, ext.identity, tuple(len(s.paths) for s in sides) + (0,) * (2 - len(sides)),
                    sum(len(s.skipped) for s in sides), note, op, decision, prob, checks,
                    cameras[:len(sides)], prov, model, gallery, notes)


def verify(a: str | Path, b: str | Path, extractor: Any = DEFAULTS.extractor, threshold: str | float | None = None,
           grid: int = DEFAULTS.grid, batch_size: int = DEFAULTS.embed_batch_size, device: Any = "auto",
           precision: str = DEFAULTS.precision, on_start: OnImage = None, on_image: OnImage = None,
           on_skip: OnSkip = None, *, max_false_match_rate: float | None = None) -> Verified:
    """Same model or not: an image (or a folder: its images' mean embedding) against another.

    The threshold is the extractor's calibrated image-to-image one (``threshold``: a cosine,
    ``paper``, ``calibrated``, ``fmr:RATE``; or ``max_false_match_rate``); an extractor without a
    calibration uses the paper's 0.81, and ``note`` says so for the training-free ones. A side
    whose images all lack residual signal gives "insufficient signal"; a side closest to camera
    photographs gives "different models".
    """
    from fpforensics.extractor.baselines import PixelExtractor, SpectralExtractor
    from fpforensics.verdict.stored import ExtractorCalibration

    ext = load_extractor(extractor, device) if isinstance(extractor, str | Path) else extractor
    cal = ExtractorCalibration.of(ext)
    op = _operating_point(cal, "image-image", threshold, max_false_match_rate)
    sides = [embed([side], ext, grid, batch_size, device, precision, on_start=on_start, on_image=on_image,
                   on_skip=on_skip, signal=True) for side in (a, b)]
    parts = [_side(s) for s in sides]
    note = None
    if threshold is None and max_false_match_rate is None and isinstance(ext, SpectralExtractor | PixelExtractor):
        note = (f"0.81 is the paper's threshold for its trained extractor; '{ext.identity}' is a different "
                "(training-free) extractor, so pass a --threshold calibrated for it (`fpt gallery calibrate`)")
    return _pair_result(sides, [p[0] for p in parts], [p[1] for p in parts], ["A", "B"], ext, cal, op, "image-image",
                        note)


def verify_model(image: str | Path, model: str, gallery: Gallery | str | Path | None = None,
                 extractor: Any = DEFAULTS.extractor, threshold: str | float | None = None, grid: int = DEFAULTS.grid,
                 batch_size: int = DEFAULTS.embed_batch_size, device: Any = "auto",
                 precision: str = DEFAULTS.precision, on_start: OnImage = None, on_image: OnImage = None,
                 on_skip: OnSkip = None, *, max_false_match_rate: float | None = None,
                 with_builtin: bool = False, photo_cut: str | None = None) -> Verified:
    """Made by enrolled model ``model`` or not: an image (or folder) against that model's fingerprint.

    Uses the image-to-fingerprint calibration (as ``identify`` does), the same gallery choice and
    the same ``photo_cut``.
    """
    from fpforensics.verdict.stored import ExtractorCalibration

    choice = choose_gallery(gallery, with_builtin)
    names, fps = choice.fingerprints()
    if model not in names:
        import difflib

        close = difflib.get_close_matches(model, names, n=3)
        hint = f" (did you mean {', '.join(repr(c) for c in close)}?)" if close else ""
        where = " + ".join("the built-in reference gallery" if lb == "built-in" else lb for lb in choice.labels)
        raise InputError(f"no model named '{model}' in {where}{hint or ' (fpt gallery list shows its models)'}")
    ext = load_extractor(extractor, device) if isinstance(extractor, str | Path) else extractor
    for g in choice.galleries:
        g.check_compatible(ext.identity, ext.embedding_dim or None)
    cal = ExtractorCalibration.of(ext)
    op = _operating_point(cal, "image-fingerprint", threshold, max_false_match_rate, choice.primary)
    cut, cut_info, cut_note = _photo_cut(cal.real_reference if cal is not None else None, choice, photo_cut)
    side = embed([image], ext, grid, batch_size, device, precision, on_start=on_start, on_image=on_image,
                 on_skip=on_skip, signal=True)
    vector, checks = _side(side)
    where = choice.labels[0] if len(choice.labels) == 1 else " + ".join(choice.labels)
    return _pair_result([side], [vector, fps[names.index(model)]], [checks, []], ["the image", model], ext, cal, op,
                        "image-fingerprint", None, model, where, [n for n in (choice.note, cut_note) if n],
                        camera_cut=cut, camera_cut_info=cut_info)


def calibrate_extractor(extractor: str | Path, pool: Any, real: Paths, generators: str | Path | None = None,
                        out: str | Path | None = None, overwrite: bool = False, holdout: str = "checkpoint",
                        images_per_model: int = DEFAULTS.pool_images, size: int = DEFAULTS.crop_size,
                        accept: float | None = None, seed: int = DEFAULTS.seed, grid: int = DEFAULTS.grid,
                        batch_size: int = DEFAULTS.embed_batch_size, device: Any = "auto",
                        precision: str = DEFAULTS.precision, info: Callable[[str], None] | None = None,
                        on_image: OnImage = None, on_skip: OnSkip = None,
                        first_generators: int | None = None) -> tuple[Path, Any]:
    """Fit the operating points of a trained extractor and store them in its checkpoint.

    Held-out synthetic models of ``pool`` (the checkpoint's, or ``holdout``, a grid expression)
    applied to crops of the ``real`` photographs, the photographs themselves (the real-photo
    reference) and optionally ``generators`` (a folder of generators set aside for calibration,
    one subfolder each; ``first_generators``: only its first N subfolders in sorted order) give
    the image-image and image-fingerprint calibrations, the margin rule and the real-photo rule
    (``accept``: share of calibration model images it keeps). Written to ``out`` (a new file) or,
    with ``overwrite``, into the checkpoint itself; the weights and the identity do not change.
    Returns the file and the
    :class:`~fpforensics.verdict.stored.ExtractorCalibration`.
    """
    from fpforensics.checkpoints import load_checkpoint
    from fpforensics.extractor import DEFAULT_EXTRACTOR_PATH
    from fpforensics.images.decode import list_images
    from fpforensics.io.store import check_writable
    from fpforensics.synthesis.pool import open_pool
    from fpforensics.verdict.calibrate import calibrate_from_sources
    from fpforensics.verdict.realphoto import DEFAULT_ACCEPT
    from fpforensics.verdict.stored import write_calibration

    path = DEFAULT_EXTRACTOR_PATH if str(extractor) == "default" else Path(extractor)
    checkpoint = load_checkpoint(path, kind="extractor")  # a baseline name or a foreign file fails here
    target = Path(out) if out is not None else path
    if target.resolve() == path.resolve() and not overwrite:
        raise InputError(f"{path}: writing the calibration into the extractor needs --overwrite (or give --out NEW.pt)")
    if out is not None and target.exists() and target.resolve() != path.resolve() and not overwrite:
        raise InputError(f"{target}: exists (use --overwrite to replace it)")
    check_writable(target)
    photos = list_images(real)
    pool = open_pool(pool)
    ext = load_extractor(path, device)
    cal = calibrate_from_sources(ext, checkpoint, pool, photos, generators, holdout, images_per_model, size, seed,
                                 accept=DEFAULT_ACCEPT if accept is None else accept, device=_ext_device(ext),
                                 grid=grid, batch_size=batch_size, precision=precision, info=info, on_image=on_image,
                                 on_skip=on_skip, first_generators=first_generators)
    return write_calibration(path, cal, target, overwrite=True), cal


def _ext_device(extractor: Any) -> Any:
    """The device an extractor's weights are on (CPU for the training-free ones)."""
    return next((p.device for p in extractor.parameters()), "cpu")
