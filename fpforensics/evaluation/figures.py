"""Evaluation: the PNG figures of an ``fpt eval`` report (matplotlib, Agg backend: no display needed).

Per extractor (clean images): confusion matrix, t-SNE of the embeddings coloured by model,
same/different-model similarity histograms. Across extractors: ROC curves, accuracy vs
perturbation strength. Per model: the mean residual spectrum (log10 radial power).
"""

from __future__ import annotations

from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402

from fpforensics.io.store import safe_name  # noqa: E402

DPI = 110


def model_colors(n: int) -> list:
    cmap = plt.get_cmap("tab20" if n > 10 else "tab10")
    return [cmap(i % cmap.N) for i in range(n)]


def _short(names: list[str], width: int = 22) -> list[str]:
    return [n if len(n) <= width else n[: width - 1] + "…" for n in names]


def _save(fig, path: Path) -> Path:
    fig.savefig(path, dpi=DPI, bbox_inches="tight", metadata={"fpt_format": "figure"})  # fpt's own: see file_kind
    plt.close(fig)
    return path


def confusion_figure(path: Path, confusion: np.ndarray, names: list[str], title: str) -> Path:
    """Row-normalized confusion matrix (rows: true model), counts summed over repeats."""
    cm = np.asarray(confusion, dtype=np.float64)
    norm = cm / np.maximum(cm.sum(axis=1, keepdims=True), 1)
    n = len(names)
    size = max(4.5, 0.42 * n + 2.5)
    fig, ax = plt.subplots(figsize=(size, size * 0.9))
    im = ax.imshow(norm, cmap="Blues", vmin=0, vmax=1)
    ax.set_xticks(range(n), _short(names), rotation=60, ha="right", fontsize=7)
    ax.set_yticks(range(n), _short(names), fontsize=7)
    ax.set_xlabel("predicted model")
    ax.set_ylabel("true model")
    if n <= 25:
        for i in range(n):
            for j in range(n):
                if norm[i, j] >= 0.005:
                    ax.text(j, i, f"{100 * norm[i, j]:.0f}", ha="center", va="center", fontsize=6,
                            color="white" if norm[i, j] > 0.5 else "black")
    fig.colorbar(im, ax=ax, fraction=0.046, pad=0.04, label="fraction of the true model's queries")
    ax.set_title(title, fontsize=10)
    return _save(fig, path)


def roc_figure(path: Path, curves: dict[str, tuple[np.ndarray, np.ndarray, float]]) -> Path:
    """ROC curves of every extractor on the same test pairs (first repeat); linear and log-scaled FPR."""
    fig, axes = plt.subplots(1, 2, figsize=(10, 4.3))
    for label, (fpr, tpr, auc) in curves.items():
        for ax in axes:
            ax.plot(fpr, tpr, label=f"{label} (AUC {100 * auc:.1f}%)", lw=1.5)
    chance = np.logspace(-3, 0, 50)
    for ax in axes:
        ax.plot(chance, chance, color="grey", lw=0.8, ls=":")
        ax.set_xlabel("false positive rate (different models accepted)")
        ax.set_ylabel("true positive rate (same model accepted)")
        ax.grid(alpha=0.3)
    axes[0].set_title("ROC, verification (clean)", fontsize=10)
    axes[1].set_xscale("log")
    axes[1].set_xlim(1e-3, 1)
    axes[1].axvline(0.01, color="grey", lw=0.8, ls="--")
    axes[1].set_title("same, log FPR (dashed: FPR 1%)", fontsize=10)
    axes[0].legend(fontsize=8, loc="lower right")
    return _save(fig, path)


def tsne_figure(path: Path, embeddings: np.ndarray, labels: np.ndarray, names: list[str], title: str,
                max_points: int = 2000, seed: int = 0) -> Path:
    """2-D t-SNE (cosine metric, PCA init) of at most ``max_points`` embeddings, coloured by model."""
    from sklearn.manifold import TSNE
    from threadpoolctl import threadpool_limits

    idx = np.arange(len(labels))
    if len(idx) > max_points:
        idx = np.sort(np.random.default_rng([seed, 5]).choice(idx, max_points, replace=False))
    x, y = embeddings[idx], labels[idx]
    perplexity = float(min(30.0, max(2.0, (len(idx) - 1) / 3)))
    # One thread: sklearn's OpenMP Barnes-Hut spins badly on a busy machine (measured 54 s vs 2.8 s
    # for 1000 points on 2 shared cores), and a few thousand points need no more.
    with threadpool_limits(limits=1):
        pts = TSNE(n_components=2, perplexity=perplexity, init="pca", metric="cosine", random_state=seed,
                   max_iter=500).fit_transform(x.astype(np.float32))
    colors = model_colors(len(names))
    fig, ax = plt.subplots(figsize=(7.5, 5.5))
    for m, name in enumerate(names):
        sel = y == m
        if sel.any():
            ax.scatter(pts[sel, 0], pts[sel, 1], s=9, color=colors[m], label=name, alpha=0.85)
    ax.set_xticks([])
    ax.set_yticks([])
    ax.set_title(title, fontsize=10)
    ax.legend(fontsize=6.5, loc="center left", bbox_to_anchor=(1.0, 0.5), markerscale=1.5, frameon=False)
    return _save(fig, path)


def similarity_figure(path: Path, scores: np.ndarray, same: np.ndarray, threshold: float, title: str) -> Path:
    """Histograms of cosine similarity of same-model vs different-model test pairs."""
    fig, ax = plt.subplots(figsize=(6.5, 4))
    lo, hi = float(scores.min()), float(scores.max())
    bins = np.linspace(lo, hi if hi > lo else lo + 1e-3, 60)
    ax.hist(scores[~same], bins=bins, alpha=0.6, density=True, label="different model", color="tab:red")
    ax.hist(scores[same], bins=bins, alpha=0.6, density=True, label="same model", color="tab:blue")
    ax.axvline(threshold, color="black", ls="--", lw=1, label=f"calibrated threshold {threshold:.3f}")
    ax.set_xlabel("cosine similarity")
    ax.set_ylabel("density")
    ax.set_title(title, fontsize=10)
    ax.legend(fontsize=8)
    return _save(fig, path)


def robustness_figure(path: Path, report: dict) -> Path:
    """Top-1 accuracy (solid) and verification AUC (dashed) vs perturbation strength, per kind."""
    perts = report["perturbations"]
    kinds = [k for k in ("jpeg", "crop") if any(p.startswith(k + ":") for p in perts)]
    fig, axes = plt.subplots(1, len(kinds), figsize=(5.5 * len(kinds), 4), squeeze=False)
    for ax, kind in zip(axes[0], kinds, strict=True):
        steps = ["clean"] + [p for p in perts if p.startswith(kind + ":")]
        for k, e in enumerate(report["extractors"]):
            res = report["results"][e["label"]]
            top1 = [100 * res[p]["identification"]["top1"]["mean"] for p in steps]
            auc = [100 * res[p]["verification"]["auc"]["mean"] for p in steps]
            color = plt.get_cmap("tab10")(k % 10)
            ax.plot(range(len(steps)), top1, "o-", color=color, label=f"{e['label']} top-1")
            ax.plot(range(len(steps)), auc, "s--", color=color, alpha=0.6, label=f"{e['label']} AUC")
        ax.set_xticks(range(len(steps)), steps, rotation=30, fontsize=8)
        ax.set_ylabel("%")
        ax.set_ylim(0, 101)
        ax.grid(alpha=0.3)
        ax.set_title({"jpeg": "JPEG re-compression (quality)", "crop": "random resized crop (area)"}[kind],
                     fontsize=10)
    axes[0][-1].legend(fontsize=7, loc="center left", bbox_to_anchor=(1.0, 0.5), frameon=False)
    return _save(fig, path)


def spectra_figure(path: Path, spectra: np.ndarray, labels: np.ndarray, names: list[str]) -> Path:
    """Mean log10 radial power spectrum of the residual per model (central 128 crop, clean images)."""
    colors = model_colors(len(names))
    fig, ax = plt.subplots(figsize=(8, 4.8))
    freq = np.arange(spectra.shape[1]) / (2 * spectra.shape[1])
    for m, name in enumerate(names):
        sel = labels == m
        if sel.any():
            ax.plot(freq, spectra[sel].mean(axis=0), color=colors[m], lw=1.2, label=name)
    ax.set_xlabel("spatial frequency (cycles / pixel)")
    ax.set_ylabel("log10 power of the residual")
    ax.set_title("Mean residual spectrum per model", fontsize=10)
    ax.grid(alpha=0.3)
    ax.legend(fontsize=6.5, loc="center left", bbox_to_anchor=(1.0, 0.5), frameon=False)
    return _save(fig, path)


def write_all(out_dir: Path, report: dict, figure_data: dict, labels: np.ndarray, names: list[str],
              spectra: np.ndarray | None, tsne_max_points: int, seed: int) -> list[Path]:
    """Every figure of the report; returns the written paths."""
    out = []
    curves = {}
    for e in report["extractors"]:
        label = e["label"]
        data = figure_data[label]
        ident, ver = data["identification"], data["verification"]
        tag = safe_name(label, "extractor")
        top1 = 100 * float(np.mean(ident.top1))
        out.append(confusion_figure(out_dir / f"confusion_{tag}.png", ident.confusion, names,
                                    f"{label}: identification confusion (top-1 {top1:.1f}%, summed over repeats)"))
        out.append(tsne_figure(out_dir / f"tsne_{tag}.png", data["embeddings"], labels, names,
                               f"{label}: t-SNE of image embeddings", tsne_max_points, seed))
        out.append(similarity_figure(out_dir / f"similarity_{tag}.png", ver.scores, ver.same, ver.threshold[0],
                                     f"{label}: verification pair similarities (test pairs, repeat 0)"))
        curves[label] = (ver.roc[0], ver.roc[1], ver.auc[0])
    out.append(roc_figure(out_dir / "roc.png", curves))
    if len(report["perturbations"]) > 1:
        out.append(robustness_figure(out_dir / "robustness.png", report))
    if spectra is not None:
        out.append(spectra_figure(out_dir / "spectra.png", spectra, labels, names))
    return out
