"""`fpt ffd`: Frechet Frequency Distance between two sets of models."""

from __future__ import annotations

from pathlib import Path

import typer

from fpforensics.cli import common


def ffd(
    set_a: Path = typer.Argument(..., help="Folder with one subfolder of images per model."),
    set_b: Path = typer.Argument(..., help="Second folder of the same shape."),
    images_per_model: int = typer.Option(100, "--images-per-model", "-n", help="Images used per model (paper: 100)."),
    residual: str = typer.Option("default", "--residual", help="default | median | dncnn | PATH to DnCNN weights."),
    json_out: bool = typer.Option(False, "--json", help="Print JSON instead of a table."),
) -> None:
    """Frechet Frequency Distance between two sets of generative models (lower = more alike)."""
    from fpforensics.ffd import ModelSet, ffd_between_folders

    device = common.get_device()
    total = sum(len(ModelSet.from_folder(p).models) for p in (set_a, set_b))
    with common.progress() as bar:
        task = bar.add_task("models", total=total, rate="")
        result = ffd_between_folders(
            set_a, set_b, images_per_model=images_per_model, residual=residual, device=device,
            on_model=lambda _name: bar.advance(task), warn=common.warn,
        )
    if json_out:
        common.emit_json({"set_a": str(set_a), "set_b": str(set_b), **result.to_dict()})
        return
    from rich.table import Table

    table = Table(title="Frechet Frequency Distance")
    for col in ("FFD", "models A", "models B", "images/model", "skipped models"):
        table.add_column(col, justify="right")
    table.add_row(f"{result.ffd:.4f}", str(result.models_a), str(result.models_b), str(result.images_per_model),
                  str(len(result.skipped_models)))
    common.out.print(table)
    common.info(f"preprocessing: {result.preprocessing}")
