"""CLI: every table, line and JSON document the commands print on stdout, rendered in one place.

Results go to stdout, verbatim (paths and identities such as ``spectral[median3x3]`` are never
read as markup); messages go to stderr through :mod:`fpforensics.cli.common`.
"""

from __future__ import annotations

import csv
import json
import sys
from collections.abc import Sequence
from typing import Any

from rich.markup import escape
from rich.table import Table

from fpforensics.cli import common
from fpforensics.io.names import csv_field, display_name
from fpforensics.io.store import json_default


def say(msg: str) -> None:
    """A result line on stdout, printed verbatim (names with control characters or undecodable bytes escaped)."""
    common.out.print(common.shown(msg), highlight=False, markup=False)


def emit_json(obj: Any) -> None:
    """Machine-readable results on stdout (plain, no Rich markup)."""
    sys.stdout.write(json.dumps(obj, indent=2, default=json_default) + "\n")
    sys.stdout.flush()


def table(title: str, columns: Sequence[tuple[str, str]], rows: Sequence[Sequence[str]], caption: str | None = None,
          sections: Sequence[int] = ()) -> Table:
    """A Rich table of plain strings (escaped): ``columns`` are ``(name, justify)``; ``sections`` end a group of rows."""
    t = Table(title=escape(common.shown(title)), caption=caption)
    for name, justify in columns:
        t.add_column(name, justify=justify, overflow="fold")
    for i, row in enumerate(rows):
        t.add_row(*(escape(common.shown(c)) for c in row), end_section=i in sections)
    return t


def show(*renderables: Any) -> None:
    for r in renderables:
        common.out.print(r)


def skip_note(skipped: Sequence) -> str:
    return f"; skipped {len(skipped)} unreadable file(s)" if skipped else ""


def short_time(iso: str) -> str:
    """``2026-11-23T20:10:54+00:00`` -> ``2026-11-23 20:10`` (UTC) for tables; JSON keeps the full time."""
    return iso[:16].replace("T", " ")


# ---------------------------------------------------------------------------- embed / gallery


def embedded(e, out, spec: str) -> None:
    say(f"embedded {len(e.paths)} image(s) -> {out} ({e.embeddings.shape[1]}-d, extractor {e.extractor.identity}, "
        f"grid {e.grid}x{e.grid}){' shard ' + '/'.join(map(str, e.shard)) if e.shard[1] > 1 else ''}"
        f"{skip_note(e.skipped)}")


def merged_embeddings(inputs: Sequence, out, merged) -> None:
    say(f"merged {len(inputs)} file(s) into {out}: {len(merged.paths)} image(s), extractor {merged.extractor}")


def enrolled(path, name: str, info, e, gallery, replace: bool, as_json: bool, photo_check: dict | None = None) -> None:
    cal = gallery.calibration
    if as_json:
        return emit_json({"gallery": str(path), "model": name, "enrolled": len(e.paths), "found": e.found,
                          "skipped": len(e.skipped), "model_images": info.n_images, "models": len(gallery),
                          "threshold": cal.threshold if cal else None,
                          "threshold_source": cal.source if cal else None, "real_photo_check": photo_check})
    say(f"{'replaced' if replace else 'enrolled'} '{name}': {len(e.paths)} of {e.found} image(s){skip_note(e.skipped)}; "
        f"model now has {info.n_images} image(s); gallery {path} has {len(gallery)} model(s)")
    if cal:
        common.info(f"threshold {cal.threshold:.4f} ({cal.source})")
    if photo_check and photo_check["camera_like"]:
        common.info(f"note: {photo_check['camera_like']} of {photo_check['images']} enrolled image(s) of '{name}' look "
                    "like camera photographs to the real-photo rule (each scored as a query, without itself): expect "
                    "about that share of its images to be answered 'unknown (closest to camera photographs)'; "
                    "`fpt identify --photo-cut enrolled` fits the rule's cut on this gallery's images instead "
                    "(docs/verdicts.md)")


def gallery_list(path, gallery, as_json: bool, builtin: bool = False) -> None:
    """The enrolled models; ``--json`` adds each model's ``meta`` and the files (path, sha256) that built it."""
    models, cal = gallery.models(with_files=as_json), gallery.calibration
    if as_json:
        return emit_json({"gallery": str(path), "builtin": builtin, "extractor": gallery.extractor,
                          "threshold": cal.threshold if cal else None, "threshold_source": cal.source if cal else None,
                          "image_embeddings": gallery.has_image_embeddings, "info": gallery.info,
                          "models": [m.to_dict() | {"paths": None, "added": None} for m in models]})
    if not models:
        return say(f"gallery {path}: no models enrolled (`fpt gallery add NAME IMAGES`)")
    families = {}
    for m in models:
        if m.family:
            families.setdefault(m.family, []).append(m)
    if builtin:
        columns = [("name", "left"), ("family", "left"), ("images", "right"), ("dates", "left"), ("source", "left")]
        rows = [[m.name, m.family or "-", m.n_images, m.meta.get("date_range", "-"), m.meta.get("source", "")]
                for m in models]
        title = f"built-in reference gallery {path} ({len(models)} models, {sum(m.n_images for m in models)} images)"
    else:
        columns = [("name", "left"), *([("family", "left")] if families else []), ("images", "right"),
                   ("enrolled", "left"), ("updated", "left"), ("extractor", "left")]
        rows = [[m.name, *([m.family or "-"] if families else []), m.n_images, short_time(m.created),
                 short_time(m.updated), m.extractor or ""] for m in models]
        title = f"{path} ({len(models)} models)"
    show(table(title, columns, rows))
    for family, members in families.items():
        note = next((m.meta["family_note"] for m in members if m.meta.get("family_note")), "")
        say(f"family {family}: {', '.join(m.name for m in members)}" + (f" ({note})" if note else ""))
    if builtin:
        say(f"extractor: {gallery.extractor}; built with: {gallery.info.get('command', '?')}; "
            "provenance of each model: `fpt gallery show NAME --builtin`")
    if cal:
        say(f"threshold: {cal.threshold:.4f} ({cal.source})")


def model_details(m, as_json: bool) -> None:
    if as_json:
        return emit_json(m.to_dict())
    common.out.print(common.shown(m.name), style="bold", highlight=False, markup=False)
    for key, value in (("images", m.n_images), ("enrolled", m.created), ("updated", m.updated),
                       ("extractor", m.extractor), ("grid", f"{m.grid}x{m.grid}"), ("tool version", m.tool_version)):
        say(f"  {key:<13}{value}")
    for key, value in m.meta.items():
        value = ", ".join(f"{k} {v}" for k, v in value.items()) if isinstance(value, dict) else value
        say(f"  {key.replace('_', ' '):<13}{value}")
    say("  sources (added, sha256, path):")
    for f in m.files:
        say(f"    {f.added}  {f.sha256 or '-':<64}  {f.path}")


def calibration(path, gallery, cal, as_json: bool) -> None:
    if as_json:
        return emit_json({"gallery": str(path), "threshold": cal.threshold, "source": cal.source, **cal.info})
    say(f"threshold {cal.threshold:.4f} ({cal.source}) for extractor {gallery.extractor}")
    for k, v in cal.info.items():
        say(f"  {k}: {v}")


# ---------------------------------------------------------------------------- identify / verify


CSV_COLUMNS = ["path", "rank", "model", "cosine", "probability", "verdict", "prediction", "margin", "image_sha256",
               "tool_version", "extractor", "extractor_sha256", "operating_point", "threshold", "timestamp"]
VERDICT_STYLE = {"attributed": "green", "ambiguous": "yellow", "unknown": "yellow", "insufficient signal": "red"}


def _prediction(q) -> str:
    """The CSV ``prediction`` column: the model, or what else the verdict is."""
    return q.prediction or ("unknown model" if q.verdict.kind == "unknown" else q.verdict.kind)


def identified(result, as_json: bool, as_csv: bool) -> None:
    """The verdict of every image: JSON (full), CSV (one row per ranked model) or a table; names are never cut."""


    e, op = result.embedded, result.operating_point
    if as_json:
        return emit_json({
            "gallery": str(result.gallery.path), "galleries": result.galleries, "extractor": e.extractor.identity,
            "threshold": op.threshold, "operating_point": op.to_dict(),
            "margin_rule": result.margin_rule.to_dict() if result.margin_rule else None,
            "notes": result.notes, "skipped": len(e.skipped), "results": [q.to_dict() for q in result.results]})
    if as_csv:
        w = csv.writer(sys.stdout, lineterminator="\n")
        w.writerow(CSV_COLUMNS)
        for q in result.results:
            p = q.provenance
            tail = [p["image_sha256"], p["tool_version"], p["extractor"], p["extractor_sha256"] or "", op.name,
                    f"{op.threshold:.6f}", p["timestamp"]]
            head = [csv_field(q.path)]
            margin = f"{q.verdict.margin:.6f}" if q.verdict.margin is not None else ""
            if q.verdict.kind == "insufficient signal":
                w.writerow([*head, "", "", "", "", csv_field(q.verdict.text), _prediction(q), "", *tail])
            for r, rk in enumerate(q.ranking if q.verdict.kind != "insufficient signal" else [], start=1):
                prob = f"{rk.probability:.6f}" if rk.probability is not None else ""
                w.writerow([*head, r, csv_field(rk.model), f"{rk.cosine:.6f}", prob, csv_field(q.verdict.text),
                            csv_field(_prediction(q)), margin, *tail])
        return sys.stdout.flush()
    t = Table(title=f"identification against {len(result.gallery) if len(result.galleries) == 1 else 'the'} "
                    f"model(s) of {' + '.join(display_name(g) for g in result.galleries)}, threshold {op.threshold:.4f}")
    for col, just in (("image", "left"), ("rank", "right"), ("model", "left"), ("cosine", "right"),
                      ("P(same)", "right"), ("verdict", "left")):
        t.add_column(col, justify=just, overflow="fold")
    for q in result.results:
        style = VERDICT_STYLE.get(q.verdict.kind, "white")
        text = display_name(q.verdict.text)
        if q.verdict.margin is not None and q.verdict.kind in ("attributed", "ambiguous"):
            text += f" (margin {q.verdict.margin:.4f})"
        verdict = f"[{style}]{escape(text)}[/{style}]"
        name = escape(display_name(q.path))
        if q.verdict.kind == "insufficient signal" or not q.ranking:
            t.add_row(name, "-", "-", "-", "-", verdict, end_section=True)
            continue
        for r, rk in enumerate(q.ranking, start=1):
            prob = f"{rk.probability:.3f}" if rk.probability is not None else "-"
            t.add_row(name if r == 1 else "", str(r), escape(display_name(rk.model)), f"{rk.cosine:.4f}", prob,
                      verdict if r == 1 else "", end_section=r == len(q.ranking))
    show(t)
    for note in result.notes:
        common.info(note)
    counts = {k: sum(q.verdict.kind == k for q in result.results) for k in VERDICT_STYLE}
    camera = sum(q.verdict.reason == "closest to camera photographs" for q in result.results)
    common.info(f"{len(result.results)} image(s): {counts['attributed']} attributed, {counts['unknown']} unknown model "
                f"({camera} closest to camera photographs), {counts['ambiguous']} ambiguous, "
                f"{counts['insufficient signal']} insufficient signal{skip_note(e.skipped)}")


def _side_checks(checks) -> list[dict]:
    return [c.to_dict() for c in checks]


def verified(a, b, res, as_json: bool) -> None:
    """A 1:1 verdict; "insufficient signal" shows the reason instead of a cosine."""


    insufficient = res.verdict == "insufficient signal"
    if as_json:
        sides = ("a", "b")
        return emit_json({
            "a": str(a), "b": str(b) if b is not None else None, "model": res.model, "gallery": res.gallery,
            "cosine": None if insufficient else res.cosine, "threshold": res.threshold,
            "probability": None if insufficient else res.probability, "same_model": res.same_model,
            "verdict": res.verdict, "reason": res.decision.reason or None if res.decision else None,
            "extractor": res.extractor, "images": list(res.images), "note": res.note,
            "operating_point": res.operating_point.to_dict() if res.operating_point else None,
            "signal": {k: _side_checks(c) for k, c in zip(sides, res.signal, strict=False)},
            "real_photo": {k: c.to_dict() if c else None for k, c in zip(sides, res.real_photo, strict=False)},
            "provenance": res.provenance, "notes": res.notes})
    if insufficient:
        say(f"-> {display_name(res.decision.text)}")
    else:
        prob = f"  P(same model) {res.probability:.3f}" if res.probability is not None else ""
        target = f" against model {display_name(res.model)}" if res.model else ""
        say(f"cosine {res.cosine:.4f}{target}  threshold {res.threshold:.4f}{prob}  -> {display_name(res.decision.text)}")
    if res.note:
        say(f"note: {res.note}")
    for note in res.notes:
        common.info(note)


def embedded_images(e, out, provenance: list[dict], as_json: bool) -> None:
    """``fpt embed``: per image its residual-signal check and provenance (JSON), or the images without signal."""


    checks = e.signal or []
    if as_json:
        return emit_json({"out": str(out), "extractor": e.extractor.identity, "grid": e.grid, "images": len(e.paths),
                          "skipped": len(e.skipped),
                          "results": [{"path": str(p), "signal": c.to_dict(), "provenance": prov}
                                      for p, c, prov in zip(e.paths, checks, provenance, strict=True)]})
    embedded(e, out, "")
    weak = [(p, c) for p, c in zip(e.paths, checks, strict=True) if not c.ok]
    if weak:
        show(table(f"{len(weak)} image(s) with insufficient signal (embedded, but no verdict will be given)",
                   [("image", "left"), ("reason", "left")], [[display_name(p), c.reason] for p, c in weak]))


def calibrated(path, cal, as_json: bool) -> None:
    """What ``fpt calibrate`` stored: thresholds, error rates, the margin and the real-photo rule."""
    summary = cal.summary()
    if as_json:
        return emit_json({"out": str(path), **summary})
    say(f"wrote {path}: operating points stored with the extractor")
    for name, what in (("image", "verify A B"), ("fingerprint", "identify, verify --model")):
        c = summary.get(name)
        if c:
            margin = (f", ambiguous below a margin of {c['ambiguous_margin']:.4f}"
                      if c["ambiguous_margin"] and name == "fingerprint" else "")
            say(f"  {what}: threshold {c['eer_threshold']:.4f} (equal-error rate {c['eer']:.1%}, AUC {c['auc']:.3f}, "
                f"{c['genuine']:,} + {c['impostor']:,} scores){margin}")
    ref = summary.get("real_reference")
    if ref:
        for kind, rule in ref["rules"].items():
            say(f"  real-photo rule ({kind}): keeps {rule['accept']:.0%} of calibration model images, calls "
                f"{rule['rejected']:.1%} of the {ref['photos']} reference photographs camera photographs "
                f"(AUC {rule['auc']:.3f})")
    common.info(f"calibration data: {cal.fingerprint.data if cal.fingerprint else ''}")


# ---------------------------------------------------------------------------- cluster


def clustered(r, examples: int, as_json: bool) -> None:
    """``fpt cluster``: per group its size, verdict and example names; the unplaced images; the summary on stderr."""
    res, path, thr = r.clustering, r.gallery_path, r.threshold
    if as_json:
        group_of = {p: i + 1 for i in range(res.n_groups) for p in r.members(i)}
        return emit_json({
            "extractor": r.extractor, "gallery": str(path) if r.gallery is not None or r.enroll_prefix else None,
            "threshold": thr, "images": len(r.paths), "found": r.found, "skipped": len(r.skipped),
            "clustering": res.to_dict(),
            "groups": [{"group": i + 1, "size": m.size, **m.to_dict(), "enrolled_as": r.enrolled[i],
                        "examples": r.examples(i, examples), "members": r.members(i)} for i, m in enumerate(r.groups)],
            "unplaced": r.unplaced,
            "assignments": [{"path": p, "group": group_of.get(p)} for p in r.paths],
        })
    for i, m in enumerate(r.groups):
        if m.model is None:
            verdict = "unknown source (no gallery)"
        elif m.known:
            verdict = f"{m.model} (cosine {m.cosine:.4f}; {m.agreement:.0%} of its images identified as it)"
        else:
            at = f" at threshold {thr:.4f}" if thr is not None else ""
            verdict = (f"unknown source (nearest {m.model}, cosine {m.cosine:.4f}; only {m.agreement:.0%} of its "
                       f"images identified as it{at})")
        say(f"group {i + 1}: {m.size} image(s)  {verdict}" + (f"  enrolled as {r.enrolled[i]}" if r.enrolled[i] else ""))
        shown = r.examples(i, examples)
        for p in shown:
            say(f"    {p}")
        if m.size > len(shown):
            say(f"    ... {m.size - len(shown)} more")
    unplaced = r.unplaced
    if unplaced:
        say(f"unplaced: {len(unplaced)} image(s) (no group of at least {res.min_size})")
        for p in unplaced[:examples]:
            say(f"    {p}")
        if len(unplaced) > examples:
            say(f"    ... {len(unplaced) - examples} more")
    cut = f", cut at cosine distance {res.distance_threshold:.4f}" if res.distance_threshold is not None else ""
    common.info(f"{len(r.paths)} image(s) -> {res.n_groups} group(s), {len(unplaced)} unplaced{skip_note(r.skipped)}; "
                f"{res.method}: {res.criterion}{cut}")
    if r.gallery is None:
        common.info(f"no enrolled models at {path}: groups are not named (pass --gallery)")
    if any(r.enrolled):
        common.info(f"enrolled {res.n_groups} group(s) into {path} as {r.enroll_prefix}-1..{r.enroll_prefix}-{res.n_groups}")


# ---------------------------------------------------------------------------- ffd / synthesize


def ffd(set_a, set_b, result, as_json: bool) -> None:
    if as_json:
        return emit_json({"set_a": str(set_a), "set_b": str(set_b), **result.to_dict()})
    show(table("Frechet Frequency Distance", [(c, "right") for c in ("FFD", "models A", "models B", "images/model",
                                                                      "skipped models")],
               [[f"{result.ffd:.4f}", result.models_a, result.models_b, result.images_per_model,
                 len(result.skipped_models)]]))
    common.info(f"preprocessing: {result.preprocessing}")


def merged_pool(inputs: Sequence, out, pool, as_json: bool) -> None:
    n_eta = sum(e.reached_eta for e in pool.entries)
    if as_json:
        return emit_json({"out": str(out), "models": len(pool), "reached_eta": n_eta, "fingerprint": pool.fingerprint})
    say(f"merged {len(inputs)} input(s) into {out}: {len(pool)} models ({n_eta} reached eta), "
        f"fingerprint {pool.fingerprint}")


def synthesized(summary, eta: float, max_steps: int, as_json: bool) -> None:
    r = summary.to_dict()
    if as_json:
        return emit_json(r)

    def fmt(v, spec=".4f"):
        return "-" if v is None else format(v, spec)

    columns = [(c, "right") for c in ("models", "trained now", "reached eta", "mean final loss", "mean eval loss",
                                       "mean steps", "time (s)", "models/s")]
    show(table(f"Synthetic models -> {summary.out}", columns, [[
        summary.planned, r["trained"], f"{r['reached_eta']}/{r['trained']}", fmt(r["mean_final_loss"]),
        fmt(r["mean_eval_loss"]), fmt(r["mean_steps"], ".1f"), f"{summary.seconds:.1f}",
        f"{summary.models_per_second:.3f}"]]))
    if summary.not_reached:
        shown = ", ".join(summary.not_reached[:10]) + (" ..." if len(summary.not_reached) > 10 else "")
        common.warn(f"{len(summary.not_reached)} model(s) did not reach eta={eta} within {max_steps} steps "
                    f"(kept, marked reached_eta=False): {shown}")


# ---------------------------------------------------------------------------- eval



def denoiser(result, as_json: bool) -> None:
    if as_json:
        return emit_json(result.to_dict())
    say(f"wrote {result.path}: {result.steps} steps, held-out PSNR {result.psnr_noisy:.2f} dB noisy -> "
        f"{result.psnr_denoised:.2f} dB denoised (gain {result.psnr_gain:+.2f} dB) "
        f"on {result.val_images} held-out photo(s)")
    if result.levels:
        show(table("held-out PSNR (dB) by noise level: the denoiser pays off where it beats the median",
              [("sigma (0..255)", "right"), ("noisy", "right"), ("median 3x3", "right"), ("DnCNN", "right"),
               ("DnCNN - median", "right")],
              [[f"{r['sigma']:g}", f"{r['noisy']:.2f}", f"{r['median3x3']:.2f}", f"{r['dncnn']:.2f}",
                f"{r['dncnn'] - r['median3x3']:+.2f}"] for r in result.levels]))
    if result.psnr_jpeg:
        j = result.psnr_jpeg
        say(f"on JPEG-{j['quality']:g} crops at sigma {j['sigma']:g} (target: the JPEG crop): noisy {j['noisy']:.2f}, "
            f"median 3x3 {j['median3x3']:.2f}, DnCNN {j['dncnn']:.2f} dB")


def fused(ext, out, as_json: bool) -> None:
    parts = [{"identity": p.identity, "weight": w, "embedding_dim": int(p.embedding_dim),
              "residual": p.residual.identity} for p, w in zip(ext.parts, ext.weights, strict=True)]
    if as_json:
        return emit_json({"path": str(out), "identity": ext.identity, "embedding_dim": ext.embedding_dim,
                          "parts": parts, "calibrated": False})
    say(f"wrote {out}: {ext.identity}, {ext.embedding_dim}-d from " + ", ".join(
        f"{p['identity']} ({p['residual']}) x {p['weight']:.3g}" for p in parts))
    say("it has no operating points yet: run `fpt calibrate` on it before trusting its verdicts")


def training_plan(cfg, photos: int) -> str:
    return (f"{photos} real photos; {cfg.backbone}, batch {cfg.p} models x {cfg.k} images, {cfg.epochs} epochs, "
            f"residual {cfg.residual}, augmentation {'on' if cfg.augment else 'off'}")


def step_rate(s: dict) -> str:
    return f"loss {s['loss']:.3f} lr {s['lr']:.1e} {s['images_per_s']:.0f} img/s"


def epoch_line(r: dict, cfg) -> str:
    """One status line per epoch (epoch 0: the untrained network's zero-shot accuracy)."""
    if r["epoch"] == 0:
        return (f"before training: zero-shot {cfg.val_shots}-shot acc {r['val_acc']:.1%} on "
                f"{r['val_models']} held-out models (chance {r['val_chance']:.1%})")
    parts = [f"epoch {r['epoch']}/{cfg.epochs}", f"loss {r['loss']:.3f}", f"ce {r['ce']:.3f}",
             f"triplet {r['triplet']:.3f}", f"valid triplets {r['valid_triplets']:.0%}",
             f"zero-shot {cfg.val_shots}-shot acc {r['val_acc']:.1%} (chance {r['val_chance']:.1%}"]
    for name in ("arch", "seed"):
        if r.get(f"val_acc_unseen_{name}") is not None:
            parts[-1] += f", unseen {name} {r[f'val_acc_unseen_{name}']:.1%}"
    parts[-1] += ")"
    return "  ".join(parts)


def trained(result, cfg, as_json: bool) -> None:
    if as_json:
        return emit_json(result.to_dict())
    last = result.history[-1] if result.history else {}
    say(f"wrote {result.path} ({result.identity}): {result.epochs} epochs, zero-shot {cfg.val_shots}-shot "
        f"identification {last.get('val_acc', float('nan')):.1%} on {last.get('val_models')} held-out models "
        f"(chance {last.get('val_chance', float('nan')):.1%}); log {result.log_path}")


# ---------------------------------------------------------------------------- artifacts


def artifacts(run, as_json: bool) -> None:
    result, f = run.result, run.fdr
    if as_json:
        return emit_json({
            "space": run.space.name, "space_identity": result.space_identity, "space_note": run.space.note,
            "settings": result.settings, "real_images": len(result.real_paths), "generated_images": len(result.paths),
            "skipped_images": len(result.skipped), "out": str(run.out) if run.out else None,
            "models": [s.__dict__ for s in run.summary], "fdr": f.to_dict() if f else None,
            "classifier_trained": run.trained, "classifier_applied": run.applied})
    columns = [("model", "left")] + [(c, "right") for c in ("n", "mean |a|", "max |a| (d_FPT)", "mean d^2",
                                                             "distinct x*")]
    show(table(f"ManiFPT artifacts: space {result.space_identity}, {len(result.real_paths)} real images", columns,
               [[s.model, s.n, f"{s.mean_norm:.4g}", f"{s.max_norm:.4g}", f"{s.mean_sq_distance:.4g}",
                 s.distinct_nearest] for s in run.summary]))
    if f is not None:
        say(f"FDR = {f.fdr:.4f} (inter-class FD {f.inter:.4g} / intra-class FD {f.intra:.4g}; {f.classes} models, "
            f"PCA {f.reduced_from}->{f.dim} dims)")
    if run.trained is not None:
        t = run.trained
        cv = "n/a" if t["cv_accuracy"] is None else f"{t['folds']}-fold CV accuracy {t['cv_accuracy']:.3f}"
        say(f"artifact classifier: {cv} over {t['models']} models; saved to {t['path']}")
    if run.applied is not None:
        a = run.applied
        acc = "n/a (no known model names)" if a["accuracy"] is None else f"{a['accuracy']:.3f}"
        say(f"artifact classifier {a['path']}: accuracy {acc} on {a['known']} images of models it knows")


def evaluated(result, out, as_json: bool) -> None:
    if as_json:
        return emit_json(result.report)
    from fpforensics.cli.report_tables import sections

    show(*(table(title, [(c, "left" if c in ("extractor", "perturbation") else "right") for c in columns], rows,
                 caption="mean ± std over repeats") for title, columns, rows in sections(result.report)))
    common.info(f"report: {result.path}" + (f"; {len(result.figures)} figures in {out}" if result.figures else ""))
