"""ManiFPT, pictures: a panel per generated image (generated, nearest real, artifact in rgb and log-spectrum)."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import numpy as np
import torch

from fpforensics.spectrum import log_magnitude_spectrum


def _to_pil(arr: np.ndarray, tile: int):
    from PIL import Image

    img = Image.fromarray(np.clip(arr * 255.0 + 0.5, 0, 255).astype(np.uint8))
    return img.resize((tile, tile), Image.NEAREST) if img.size != (tile, tile) else img


def artifact_panel(generated: torch.Tensor, nearest: torch.Tensor, tile: int = 192, caption: str = ""):
    """A readable picture: generated | nearest real | artifact (rgb) | artifact log-spectrum (freq).

    Both images are the space's view (``fit_image`` at ``size``). The rgb artifact is
    ``x_G - x*`` scaled so its largest absolute value reaches full range (grey = 0); the freq
    artifact is the channel-mean of ``log|FFT(x_G)| - log|FFT(x*)|`` (zero frequency centred),
    shown with a diverging colour map (white = 0, red = more energy in the generated image).
    """
    from matplotlib import colormaps
    from PIL import Image, ImageDraw

    g, r = generated.float().cpu(), nearest.float().cpu()
    diff = (g - r).numpy().transpose(1, 2, 0)
    peak = float(np.abs(diff).max())
    rgb_art = diff / (2 * peak) + 0.5 if peak > 0 else np.full_like(diff, 0.5)
    spec = (log_magnitude_spectrum(g[None]) - log_magnitude_spectrum(r[None]))[0].mean(0).numpy()
    speak = float(np.abs(spec).max())
    spec_img = colormaps["RdBu_r"](spec / (2 * speak) + 0.5 if speak > 0 else np.full_like(spec, 0.5))[..., :3]
    tiles = [_to_pil(g.numpy().transpose(1, 2, 0), tile), _to_pil(r.numpy().transpose(1, 2, 0), tile),
             _to_pil(rgb_art, tile), _to_pil(spec_img, tile)]
    labels = ["generated", "nearest real", f"artifact rgb (x{0.5 / peak:.1f})" if peak > 0 else "artifact rgb (0)",
              f"artifact log-spectrum (+-{speak:.2f})"]
    head, foot = 16, 16 if caption else 0
    canvas = Image.new("RGB", (4 * tile + 3 * 4, tile + head + foot), "white")
    draw = ImageDraw.Draw(canvas)
    for i, (t, label) in enumerate(zip(tiles, labels, strict=True)):
        x = i * (tile + 4)
        canvas.paste(t, (x, head))
        draw.text((x + 2, 2), label, fill="black")
    if caption:
        draw.text((2, head + tile + 2), caption[: 4 * tile // 6], fill="black")
    return canvas



PANEL_KIND = "artifact-panel"


def panel_targets(folder: Path, items) -> list[Path]:
    """``folder/<model>/<image stem>.png`` for each ``(path, model)`` (a suffix ``_N`` when names collide)."""
    from fpforensics.io.store import safe_name

    used: set[Path] = set()
    out = []
    for path, model in items:
        stem = safe_name(Path(path).stem, "model")
        target = folder / safe_name(model, "model") / f"{stem}.png"
        n = 1
        while target in used:
            target = folder / safe_name(model, "model") / f"{stem}_{n}.png"
            n += 1
        used.add(target)
        out.append(target)
    return out


def _refuse(target: Path, overwrite: bool) -> None:
    from fpforensics.errors import OutputError
    from fpforensics.io.store import EMPTY, file_kind

    if not target.exists():
        return
    kind = file_kind(target)
    if kind not in (PANEL_KIND, EMPTY):
        raise OutputError(f"{target}: exists and is not a panel fpt wrote; refusing to replace it (choose another --png)")
    if kind == PANEL_KIND and not overwrite:
        raise OutputError(f"{target}: exists (an fpt panel); pass --overwrite to replace the panels")


def check_panels(folder: Path, models: dict[str, list[Path]], overwrite: bool = False) -> None:
    """Before any work: no panel would replace a file fpt did not write, or one of fpt's without ``overwrite``."""
    if folder.exists():
        for target in panel_targets(folder, [(p, m) for m, paths in models.items() for p in paths]):
            _refuse(target, overwrite)


def write_panels(result, space, folder: Path, on_image: Callable[[int], None] | None = None, overwrite: bool = False,
                 warn: Callable[[str], None] | None = None) -> None:
    """One panel per generated image: ``folder/<model>/<image stem>.png`` (a suffix ``_N`` when names collide).

    Panels carry a PNG text chunk ``fpt_format = artifact-panel``; an image that can no longer be
    read is warned about and left out.
    """
    from PIL.PngImagePlugin import PngInfo

    from fpforensics.errors import InputError, OutputError
    from fpforensics.images.decode import load_image

    try:
        folder.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise OutputError(f"{folder}: cannot create folder ({exc.strerror or exc})") from None
    info = PngInfo()
    info.add_text("fpt_format", PANEL_KIND)
    targets = panel_targets(folder, zip(result.paths, result.models, strict=True))
    for path, model, near, dist, target in zip(result.paths, result.models, result.nearest_path, result.distance,
                                               targets, strict=True):
        _refuse(target, overwrite)
        target.parent.mkdir(parents=True, exist_ok=True)
        try:
            generated, nearest = load_image(path), load_image(near)
        except InputError as exc:
            if warn:
                warn(f"no panel for {path}: {exc}")
            continue
        panel = artifact_panel(space.view(generated), space.view(nearest),
                               caption=f"{model}/{path.name}  x*={near.name}  |a|={dist ** 0.5:.4g} "
                                       f"({result.space_identity})")
        try:
            panel.save(target, format="PNG", pnginfo=info)
        except OSError as exc:
            raise OutputError(f"{target}: could not write ({exc.strerror or exc})") from None
        if on_image:
            on_image(1)
