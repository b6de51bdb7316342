"""`fpt artifact`: ManiFPT artifacts of generated images against a real-image manifold."""

from __future__ import annotations

from pathlib import Path

import typer

from fpforensics.cli import common


def artifact(
    generated: list[Path] = typer.Argument(..., help="Generated images: files or folders (a subfolder per model)."),
    real: Path = typer.Option(..., "--real", help="Folder (or file) of real images: the estimated data manifold."),
    space: str = typer.Option("freq", "--space", help="rgb | freq | sl | ssl."),
    out: Path | None = typer.Option(None, "--out", "-o", help="Write artifacts to this HDF5 file."),
    png: Path | None = typer.Option(None, "--png", help="Folder for one panel per generated image (subfolder per model)."),
    size: int = typer.Option(64, "--size", help="Side of the rgb/freq image (and of panels), pixels."),
    fit: str = typer.Option("crop", "--fit", help="crop (central crop, keeps traces) | resize (whole scene)."),
    weights: Path | None = typer.Option(None, "--weights", help="sl: ResNet-50 state_dict or extractor checkpoint; "
                                                                   "ssl: Barlow Twins ResNet-50 (required)."),
    manifold_cache: Path | None = typer.Option(None, "--manifold-cache", help="HDF5 file storing/reusing real features."),
    dtype: str = typer.Option("float32", "--dtype", help="Stored artifact precision: float32 | float16."),
    batch_size: int = typer.Option(32, "--batch-size", min=1, help="Images per feature batch."),
    chunk: int = typer.Option(8192, "--chunk", min=1, help="Real features per nearest-neighbour block."),
    fdr_flag: bool = typer.Option(False, "--fdr", help="Report the FDR separability of artifacts by model."),
    fdr_dim: int = typer.Option(32, "--fdr-dim", min=1, help="PCA dimension for FDR when features are larger."),
    train_classifier: Path | None = typer.Option(None, "--train-classifier",
                                                 help="Fit the artifact attributor on these artifacts; save it here."),
    classifier: Path | None = typer.Option(None, "--classifier", help="Attribute these artifacts with a saved attributor."),
    json_out: bool = typer.Option(False, "--json", help="Print JSON instead of a table."),
) -> None:
    """ManiFPT artifacts: each generated image minus its nearest real image in a feature space."""
    import numpy as np
    from rich.markup import escape

    from fpforensics.errors import InputError
    from fpforensics.io.images import list_images
    from fpforensics.io.store import check_writable, open_h5
    from fpforensics.manifold import (
        ARTIFACTS_KIND,
        build_space,
        compute_artifacts,
        group_by_model,
        load_or_build_manifold,
        save_artifacts,
        summarize,
    )

    if dtype not in ("float32", "float16"):
        raise InputError(f"unknown --dtype '{dtype}': use float32 or float16")
    if out is not None:
        check_writable(out)
        if out.exists():
            with open_h5(out, ARTIFACTS_KIND):  # never overwrite a file that is not an artifacts file
                pass
    if train_classifier is not None:
        check_writable(train_classifier)
    if manifold_cache is not None and not manifold_cache.exists():
        check_writable(manifold_cache)
    if png is not None:
        if png.exists() and not png.is_dir():
            raise InputError(f"{png}: exists and is not a folder")
    models = group_by_model(generated)
    if (fdr_flag or train_classifier is not None) and len(models) < 2:
        raise InputError(f"--fdr and --train-classifier need images of at least 2 models, found {len(models)} "
                         f"({', '.join(models)}); give a folder with one subfolder per model")
    real_paths = list_images(real)
    device = common.get_device()
    space_obj = build_space(space, size=size, fit=fit, weights=weights, device=device)
    if space_obj.note:
        (common.warn if weights is None and space == "sl" else common.info)(escape(space_obj.note))
    n_gen = sum(len(v) for v in models.values())

    def skipped(path: Path, reason: str) -> None:
        common.warn(escape(f"skipped {reason}"))

    with common.progress() as bar:
        manifold = None
        if manifold_cache is not None and manifold_cache.exists():
            manifold = load_or_build_manifold(space_obj, real_paths, manifold_cache)
            common.info(escape(f"real manifold: {len(manifold.paths)} features from cache {manifold_cache}"))
        if manifold is None:
            t = bar.add_task("real images", total=len(real_paths), rate="")
            manifold = load_or_build_manifold(space_obj, real_paths, manifold_cache, batch_size,
                                              on_image=lambda n: bar.advance(t, n), on_skip=skipped)
            if manifold_cache is not None:
                common.info(escape(f"real features cached in {manifold_cache}"))
        tg = bar.add_task("generated images", total=n_gen, rate="")
        tn = bar.add_task("nearest neighbours", total=len(manifold.paths), rate="")
        try:
            result = compute_artifacts(space_obj, models, manifold, device=device, batch_size=batch_size,
                                       ref_chunk=chunk, on_image=lambda n: bar.advance(tg, n),
                                       on_chunk=lambda n: bar.advance(tn, n), on_skip=skipped)
        finally:
            if hasattr(manifold.features, "file"):
                manifold.features.file.close()
    if len(result.paths) == 0:
        raise InputError("no readable generated images")
    summary = summarize(result)
    labels = result.labels()

    fdr_result = None
    if fdr_flag:
        from fpforensics.manifold import fdr

        try:
            fdr_result = fdr(result.artifacts, labels, dim=fdr_dim)
        except InputError as exc:
            common.warn(escape(f"FDR not computed: {exc}"))
        else:
            if fdr_result.skipped_classes:
                left_out = ", ".join(fdr_result.skipped_classes)
                common.warn(escape(f"FDR leaves out models with fewer than 4 images: {left_out}"))

    trained = None
    if train_classifier is not None:
        from fpforensics.artifact_classifier import ArtifactClassifier, cross_validate

        try:
            cv_acc, folds = cross_validate(result.artifacts, labels)
        except InputError as exc:
            common.warn(escape(f"no cross-validated accuracy: {exc}"))
            cv_acc, folds = None, 0
        ArtifactClassifier().fit(result.artifacts, labels, result.space_identity).save(train_classifier)
        trained = {"path": str(train_classifier), "cv_accuracy": cv_acc, "folds": folds, "models": len(set(labels))}
        common.info(escape(f"artifact classifier saved to {train_classifier}"))

    applied = None
    extra = {}
    if classifier is not None:
        from fpforensics.artifact_classifier import ArtifactClassifier

        clf = ArtifactClassifier.load(classifier, result.space_identity)
        proba = clf.predict_proba(result.artifacts)
        predicted = np.asarray(clf.classes)[proba.argmax(axis=1)]
        known = np.isin(labels, clf.classes)
        applied = {"path": str(classifier), "known": int(known.sum()),
                   "accuracy": float((predicted[known] == labels[known]).mean()) if known.any() else None}
        extra = {"predicted": [str(p) for p in predicted], "confidence": proba.max(axis=1)}

    if out is not None:
        attrs = {"space_note": space_obj.note}
        if fdr_result is not None:
            attrs["fdr"] = fdr_result.fdr
            attrs["fdr_dim"] = fdr_result.dim
        save_artifacts(result, out, dtype=dtype, summary=summary, extra_attrs=attrs, extra_datasets=extra)
        common.info(escape(f"wrote {len(result.paths)} artifacts to {out}"))

    if png is not None:
        _write_panels(result, space_obj, png)

    if json_out:
        common.emit_json({
            "space": space_obj.name, "space_identity": result.space_identity, "space_note": space_obj.note,
            "settings": result.settings, "real_images": len(result.real_paths), "generated_images": len(result.paths),
            "skipped_images": len(result.skipped), "out": str(out) if out else None,
            "models": [s.__dict__ for s in summary],
            "fdr": fdr_result.to_dict() if fdr_result else None, "classifier_trained": trained,
            "classifier_applied": applied,
        })
        return
    from rich.table import Table

    table = Table(title=escape(f"ManiFPT artifacts: space {result.space_identity}, {len(result.real_paths)} real images"))
    for col in ("model", "n", "mean |a|", "max |a| (d_FPT)", "mean d^2", "distinct x*"):
        table.add_column(col, justify="left" if col == "model" else "right", overflow="fold")
    for s in summary:
        table.add_row(escape(s.model), str(s.n), f"{s.mean_norm:.4g}", f"{s.max_norm:.4g}", f"{s.mean_sq_distance:.4g}",
                      str(s.distinct_nearest))
    common.out.print(table)
    if fdr_result is not None:
        common.out.print(f"FDR = {fdr_result.fdr:.4f} (inter-class FD {fdr_result.inter:.4g} / intra-class FD "
                         f"{fdr_result.intra:.4g}; {fdr_result.classes} models, PCA {fdr_result.reduced_from}->"
                         f"{fdr_result.dim} dims)")
    if trained is not None:
        cv = "n/a" if trained["cv_accuracy"] is None else f"{trained['folds']}-fold CV accuracy {trained['cv_accuracy']:.3f}"
        common.out.print(escape(f"artifact classifier: {cv} over {trained['models']} models; saved to {trained['path']}"))
    if applied is not None:
        acc = "n/a (no known model names)" if applied["accuracy"] is None else f"{applied['accuracy']:.3f}"
        common.out.print(escape(f"artifact classifier {applied['path']}: accuracy {acc} on {applied['known']} images "
                                "of models it knows"))


def _write_panels(result, space_obj, folder: Path) -> None:
    """One panel per generated image: ``folder/<model>/<image stem>.png``."""
    from fpforensics.errors import OutputError
    from fpforensics.io.images import load_image
    from fpforensics.manifold import artifact_panel, safe_name

    try:
        folder.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise OutputError(f"{folder}: cannot create folder ({exc.strerror or exc})") from None
    used: set[Path] = set()
    with common.progress() as bar:
        task = bar.add_task("panels", total=len(result.paths), rate="")
        for path, model, near, dist in zip(result.paths, result.models, result.nearest_path, result.distance,
                                           strict=True):
            target = folder / safe_name(model) / f"{safe_name(path.stem)}.png"
            n = 1
            while target in used:
                target = folder / safe_name(model) / f"{safe_name(path.stem)}_{n}.png"
                n += 1
            used.add(target)
            target.parent.mkdir(parents=True, exist_ok=True)
            panel = artifact_panel(space_obj.view(load_image(path)), space_obj.view(load_image(near)),
                                   caption=f"{model}/{path.name}  x*={near.name}  |a|={dist ** 0.5:.4g} "
                                           f"({result.space_identity})")
            try:
                panel.save(target, format="PNG")
            except OSError as exc:
                raise OutputError(f"{target}: could not write ({exc.strerror or exc})") from None
            bar.advance(task)
