"""The tables of an ``fpt eval`` report (identification, verification, real photographs, robustness) as
titled rows (:func:`sections`): :func:`fpforensics.cli.render.evaluated` draws them in the terminal,
:func:`markdown_tables` writes them as Markdown. Plain strings only, so this module imports nothing of the CLI."""

from __future__ import annotations

import math


def _pm(d: dict | None, pct: bool = True, digits: int = 1) -> str:
    if not d or d.get("mean") is None or not math.isfinite(d["mean"]):
        return "-"
    scale = 100.0 if pct else 1.0
    m, s = d["mean"] * scale, d["std"] * scale
    return f"{m:.{digits}f} ± {s:.{digits}f}" if s > 0 else f"{m:.{digits}f}"


def _num(v: float | None, digits: int = 3) -> str:
    return "-" if v is None else f"{v:.{digits}f}"


def _auroc(o: dict) -> str:
    return _pm(o.get("auroc")) if o.get("auroc") is not None else "-"


def _name(e: dict) -> str:
    return e["label"] + (" (baseline)" if e["baseline"] else "")


IDENT_COLUMNS = ["extractor", "top-1 %", "top-5 %", "macro-F1 %", "silhouette", "Davies-Bouldin"]
VERIF_COLUMNS = ["extractor", "AUC %", "EER %", "TPR@FPR1% %", "shipped threshold", "acc (shipped) %",
                 "FMR (shipped) %", "acc (calibrated) %", "FMR (calibrated) %", "acc (oracle) %", "FMR (oracle) %",
                 "open-set AUROC %"]
REAL_COLUMNS = ["extractor", "photos rejected %", "model images accepted %", "top-1 accepted %", "top-1 all %",
                "AUROC (rule) %", "AUROC (max cosine) %"]
ROBUST_COLUMNS = ["extractor", "perturbation", "top-1 %", "macro-F1 %", "AUC %", "EER %", "acc (calibrated) %",
                  "open-set AUROC %"]


def identification_rows(report: dict, perturbation: str = "clean") -> list[list[str]]:
    """Identification (1:N) and embedding quality, one row per extractor (percent, mean ± std)."""
    rows = []
    for e in report["extractors"]:
        r = report["results"][e["label"]][perturbation]
        i, q = r["identification"], r["embedding_quality"]
        rows.append([_name(e), _pm(i["top1"]), _pm(i["top5"]), _pm(i["macro_f1"]),
                     _num(q.get("silhouette")), _num(q.get("davies_bouldin"), 2)])
    if perturbation == "clean":
        for a in report.get("attributors", []):
            i = report["results"][a["label"]]["clean"]["identification"]
            rows.append([a["label"] + " (attributor)", _pm(i["top1"]), _pm(i["top5"]), _pm(i["macro_f1"]),
                         "n/a", "n/a"])
    return rows


def verification_rows(report: dict, perturbation: str = "clean") -> list[list[str]]:
    """Verification (1:1) and open-set rejection, one row per extractor."""
    rows = []
    for e in report["extractors"]:
        r = report["results"][e["label"]][perturbation]
        v = r["verification"]
        shipped = v.get("shipped") or {}
        thr = f"{shipped['threshold']:.3f} ({shipped['operating_point']})" if shipped else "-"
        rows.append([_name(e), _pm(v["auc"]), _pm(v["eer"]), _pm(v["tpr_at_fpr1"]), thr, _pm(shipped.get("accuracy")),
                     _pm(shipped.get("fmr")), _pm(v["accuracy"]), _pm(v.get("fmr")), _pm(v["oracle_accuracy"]),
                     _pm(v.get("oracle_fmr")), _auroc(r["open_set"])])
    return rows


def real_photo_rows(report: dict) -> list[list[str]]:
    """Real photographs as unknowns (``fpt eval --real-photos``), one row per extractor."""
    rows = []
    for e in report["extractors"]:
        r = report["results"][e["label"]]["clean"].get("real_photos")
        for cut in ([r, r.get("enrolled_cut")] if r else []):
            if cut:
                name = _name(e) + (" (enrolled)" if cut is not r else "")
                rows.append([name, _pm(cut["real_rejection"]), _pm(cut["acceptance"]), _pm(cut["top1_accepted"]),
                             _pm(cut["top1_all"]), _pm(cut["auroc"]), _pm(cut["auroc_max_cosine"])])
    return rows


def robustness_rows(report: dict) -> list[list[str]]:
    rows = []
    for e in report["extractors"]:
        for p in report["perturbations"]:
            r = report["results"][e["label"]][p]
            i, v = r["identification"], r["verification"]
            rows.append([e["label"], p, _pm(i["top1"]), _pm(i["macro_f1"]), _pm(v["auc"]), _pm(v["eer"]),
                         _pm(v["accuracy"]), _auroc(r["open_set"])])
    return rows


def sections(report: dict) -> list[tuple[str, list[str], list[list[str]]]]:
    ds, s = report["dataset"], report["settings"]
    head = (f"{len(ds['models'])} models, {ds['images']} images, shots {s['shots']}, {s['repeats']} repeats")
    out = [
        (f"Identification (1:N) and embedding quality: {head}", IDENT_COLUMNS, identification_rows(report)),
        (f"Verification (1:1, {s['pairs']} test pairs) and open set", VERIF_COLUMNS, verification_rows(report)),
    ]
    real = real_photo_rows(report)
    if real:
        n = next(report["results"][e["label"]]["clean"]["real_photos"]["real_photos"] for e in report["extractors"]
                 if report["results"][e["label"]]["clean"].get("real_photos"))
        cuts = [c["photo_cut"] for e in report["extractors"]
                if (c := (report["results"][e["label"]]["clean"].get("real_photos") or {}).get("enrolled_cut"))]
        out.append((f"Real photographs as unknowns ({n} photographs; gallery of every model, the extractor's operating "
                    "point" + (f"; rows '(enrolled)': fpt identify --photo-cut {cuts[0]}" if cuts else "") + ")",
                    REAL_COLUMNS, real))
    if len(report["perturbations"]) > 1:
        out.append(("Robustness (every image perturbed)", ROBUST_COLUMNS, robustness_rows(report)))
    return out


def markdown_tables(report: dict) -> str:
    """The same tables in Markdown (for docs / README results sections)."""
    lines: list[str] = []
    for title, columns, rows in sections(report):
        lines += [f"**{title}** (mean ± std over repeats)", "", "| " + " | ".join(columns) + " |",
                  "|" + "---|" * len(columns)]
        lines += ["| " + " | ".join(r) + " |" for r in rows]
        lines.append("")
    return "\n".join(lines)


# ---------------------------------------------------------------------------- training
