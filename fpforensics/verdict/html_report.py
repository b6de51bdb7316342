"""One self-contained HTML report of identification results: images inline, inline CSS, nothing fetched.

Per query image: a thumbnail, the picture of its residual spectrum (what the extractor sees),
the ranking as bars with the threshold drawn in, the verdict and the provenance block. Every
image is a ``data:`` URI and a Content-Security-Policy forbids any other source, so the file
opens offline and reveals nothing to a network when an analyst opens it.
"""

from __future__ import annotations

import base64
import html
import io
import math
import os
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch
from PIL import Image

from fpforensics import __version__
from fpforensics.io.names import display_name
from fpforensics.io.store import html_stamp
from fpforensics.verdict.decision import KINDS, Ranked, Verdict
from fpforensics.verdict.provenance import Provenance, utc_timestamp
from fpforensics.verdict.signal import CROP, GRID, to_tensor

THUMB = 240
SPECTRUM = 256
REPORT_KIND = "html-report"  # the stamp fpt reads to know the file is its own report (io.store.file_kind)
CSP = "default-src 'none'; img-src data:; style-src 'unsafe-inline'"
CSS = """
body{font-family:system-ui,-apple-system,"Segoe UI",sans-serif;margin:24px;color:#1d2330;background:#f6f7f9}
h1{font-size:1.4em;margin:0 0 4px} .meta{color:#555;font-size:.9em;margin:2px 0}
.card{background:#fff;border:1px solid #d9dce3;border-radius:8px;padding:16px;margin:18px 0}
.name{font-family:ui-monospace,Menlo,Consolas,monospace;font-size:1.05em;overflow-wrap:anywhere;margin:0 0 10px}
.row{display:flex;gap:16px;flex-wrap:wrap;align-items:flex-start}
figure{margin:0;text-align:center;font-size:.8em;color:#555}
figure img{display:block;border:1px solid #ccc;margin-bottom:4px}
.pix{image-rendering:pixelated}
.verdict{display:inline-block;padding:6px 12px;border-radius:6px;font-weight:600;margin:4px 0 10px;overflow-wrap:anywhere}
.attributed{background:#d9f2e1;color:#0f5a2a} .ambiguous{background:#fff1cc;color:#6b4d00}
.unknown{background:#e5e8ee;color:#333} .insufficient{background:#fde0e0;color:#8a1f1f}
.rank{flex:1 1 420px;min-width:320px} table{border-collapse:collapse;width:100%}
td,th{padding:3px 6px;vertical-align:middle;text-align:left;font-size:.9em}
th{color:#555;font-weight:500;border-bottom:1px solid #ddd} td.num{text-align:right;font-variant-numeric:tabular-nums}
td.model{overflow-wrap:anywhere;max-width:260px} td.bar{width:45%;padding:0} svg{display:block;width:100%;height:18px}
.prov{font-size:.82em;margin-top:10px} .prov td{padding:1px 8px 1px 0} .prov td:first-child{color:#555;white-space:nowrap}
.mono{font-family:ui-monospace,Menlo,Consolas,monospace;overflow-wrap:anywhere;word-break:break-all}
.legend{font-size:.8em;color:#555}
"""


@dataclass
class ReportEntry:
    """One query as the report shows it; plain values, so the CLI (or a dict) can build it."""

    path: str | bytes | os.PathLike
    ranking: list[Ranked]
    verdict: Verdict
    threshold: float | None = None
    image: object = None  # PIL image, (3, H, W) tensor, (H, W, 3) array, or None to read ``path``
    provenance: Provenance | dict | None = None
    signal: dict = field(default_factory=dict)

    @classmethod
    def coerce(cls, item: ReportEntry | dict) -> ReportEntry:
        """Accept the dataclass or a dict with the same keys; rankings may be (model, cosine[, probability])."""
        if isinstance(item, ReportEntry):
            return item
        d = dict(item)
        d["ranking"] = [r if isinstance(r, Ranked) else Ranked(**r) if isinstance(r, dict) else Ranked(*r)
                        for r in d.get("ranking", [])]
        v = d.get("verdict")
        if isinstance(v, dict):
            d["verdict"] = Verdict(v.get("verdict", v.get("kind", "unknown")), tuple(v.get("models", ())),
                                   v.get("reason") or "", v.get("margin"))
        return cls(**d)


def _data_uri(img: Image.Image, lossless: bool = False) -> str:
    """PNG for small or enlarged (pixel-exact) pictures, JPEG for the rest: the file stays small."""
    buf = io.BytesIO()
    if lossless or img.width * img.height <= CROP * CROP or img.mode != "RGB":
        img.save(buf, format="PNG", optimize=True)
        mime = "image/png"
    else:
        img.save(buf, format="JPEG", quality=85)
        mime = "image/jpeg"
    return f"data:{mime};base64,{base64.b64encode(buf.getvalue()).decode('ascii')}"


def _load(entry: ReportEntry) -> torch.Tensor | None:
    if entry.image is not None:
        return to_tensor(entry.image)
    try:
        from fpforensics.images.decode import load_image

        return load_image(os.fsdecode(entry.path) if isinstance(entry.path, bytes) else entry.path)
    except Exception:  # the report still lists a result whose file has gone or is unreadable
        return None


def thumbnail(image: torch.Tensor) -> Image.Image:
    """At most ``THUMB`` px; small images are enlarged with nearest-neighbour so their pixels stay visible."""
    arr = (image.clamp(0, 1) * 255).round().to(torch.uint8).permute(1, 2, 0).numpy()
    img = Image.fromarray(arr)
    if max(img.size) > THUMB:
        img.thumbnail((THUMB, THUMB), Image.Resampling.LANCZOS)
    elif max(img.size) < THUMB // 2:
        k = THUMB // max(img.size)
        img = img.resize((img.width * k, img.height * k), Image.Resampling.NEAREST)
    return img


@torch.no_grad()
def spectrum_picture(image: torch.Tensor) -> Image.Image:
    """Log-magnitude spectrum of the median residual, averaged over the 3x3 grid crops and channels (centred)."""
    import matplotlib

    from fpforensics.images.crops import grid_crops
    from fpforensics.residual.median import MedianResidual
    from fpforensics.spectrum import log_magnitude_spectrum

    spec = log_magnitude_spectrum(MedianResidual()(grid_crops(image, CROP, GRID))).mean(dim=(0, 1)).numpy()
    lo, hi = np.percentile(spec, [1, 99.5])
    norm = np.clip((spec - lo) / (hi - lo), 0, 1) if hi > lo else np.zeros_like(spec)
    rgb = (matplotlib.colormaps["magma"](norm)[..., :3] * 255).astype(np.uint8)
    return Image.fromarray(rgb).resize((SPECTRUM, SPECTRUM), Image.Resampling.NEAREST)


def _axis(ranking: Sequence[Ranked], threshold: float | None) -> tuple[float, float]:
    values = [r.cosine for r in ranking] + ([threshold] if threshold is not None else [])
    lo = math.floor((min(values) - 0.02) * 20) / 20 if values else 0.0
    return max(-1.0, min(lo, 0.95)), 1.0


def _bar(cosine: float, lo: float, hi: float, threshold: float | None, colour: str) -> str:
    """One row of the bar chart: an inline SVG in a 0..100 box, the threshold as a dashed line."""
    x = 100 * (min(max(cosine, lo), hi) - lo) / (hi - lo)
    parts = [f'<rect x="0" y="3" width="{x:.2f}" height="12" fill="{colour}"/>']
    if threshold is not None:
        t = 100 * (threshold - lo) / (hi - lo)
        parts.append(f'<line x1="{t:.2f}" y1="0" x2="{t:.2f}" y2="18" stroke="#c0392b" stroke-width="2" '
                     'stroke-dasharray="3,2" vector-effect="non-scaling-stroke"/>')
    return f'<svg viewBox="0 0 100 18" preserveAspectRatio="none" role="img">{"".join(parts)}</svg>'


def _axis_row(lo: float, hi: float) -> str:
    ticks = np.round(np.arange(lo, hi + 1e-9, 0.05 if hi - lo <= 0.5 else 0.25), 2)
    labels = "".join(f'<span style="position:absolute;left:{100 * (t - lo) / (hi - lo):.1f}%;transform:translateX(-50%)">'
                     f"{t:g}</span>" for t in ticks)
    return (f'<tr><td></td><td></td><td class="bar legend"><div style="position:relative;height:1.2em">{labels}'
            "</div></td><td></td><td></td></tr>")


def _ranking_table(entry: ReportEntry) -> str:
    if entry.verdict.kind == "insufficient signal":
        return '<p class="legend">no score: too little residual signal to compare with any model</p>'
    if not entry.ranking:
        return '<p class="legend">no enrolled model to compare with</p>'
    lo, hi = _axis(entry.ranking, entry.threshold)
    thr = f"; dashed red line: threshold {entry.threshold:.3f}" if entry.threshold is not None else ""
    rows = [f'<p class="legend">bars: cosine to each enrolled model{thr}; P(same): calibrated probability of '
            "the same model</p>",
            '<table><tr><th>#</th><th>model</th><th></th><th class="num">cosine</th><th class="num">P(same)</th></tr>',
            _axis_row(lo, hi)]
    for i, r in enumerate(entry.ranking):
        above = entry.threshold is None or r.cosine >= entry.threshold
        colour = "#2e7d4f" if i == 0 and entry.verdict.kind == "attributed" else ("#5b7db1" if above else "#aab4c3")
        prob = f"{r.probability:.3f}" if r.probability is not None else "n/a"
        rows.append(f'<tr><td class="num">{i + 1}</td><td class="model">{html.escape(display_name(r.model))}</td>'
                    f'<td class="bar">{_bar(r.cosine, lo, hi, entry.threshold, colour)}</td>'
                    f'<td class="num">{r.cosine:.4f}</td><td class="num">{prob}</td></tr>')
    return "".join(rows) + "</table>"


def _value(value: object) -> str:
    """Provenance values for people: nested dicts as ``key: value`` pairs, floats to 6 significant digits."""
    if isinstance(value, dict):
        return "; ".join(f"{k}: {_value(v)}" for k, v in value.items())
    if isinstance(value, float):
        return f"{value:.6g}"
    if isinstance(value, list):
        return ", ".join(_value(v) for v in value)
    return "n/a" if value is None else str(value)


def _provenance(entry: ReportEntry) -> str:
    prov = entry.provenance.to_dict() if isinstance(entry.provenance, Provenance) else dict(entry.provenance or {})
    if entry.signal:
        prov["signal"] = entry.signal
    if not prov:
        return ""
    rows = []
    for key, value in prov.items():
        rows.append(f'<tr><td>{html.escape(key)}</td><td class="mono">{html.escape(display_name(_value(value)))}</td></tr>')
    return f'<table class="prov">{"".join(rows)}</table>'


def _card(entry: ReportEntry) -> str:
    image = _load(entry)
    figures = []
    if image is not None:
        h, w = image.shape[-2:]
        thumb = _data_uri(thumbnail(image), lossless=max(h, w) < THUMB // 2)
        figures.append(f'<figure><img class="pix" alt="query image" src="{thumb}">'
                       f"{w} x {h} px</figure>")
        figures.append(f'<figure><img alt="residual spectrum" src="{_data_uri(spectrum_picture(image))}">'
                       "residual spectrum (log magnitude)</figure>")
    else:
        figures.append('<figure class="legend">image not readable: no pictures</figure>')
    v = entry.verdict
    css = v.kind.split()[0] if v.kind in KINDS else "unknown"
    margin = f" (margin to runner-up {v.margin:.4f})" if v.margin is not None else ""
    return (f'<section class="card"><p class="name">{html.escape(display_name(entry.path))}</p>'
            f'<div class="verdict {css}">{html.escape(display_name(v.text))}</div>'
            f'<span class="legend">{html.escape(margin)}</span>'
            f'<div class="row">{"".join(figures)}<div class="rank">{_ranking_table(entry)}</div></div>'
            f"{_provenance(entry)}</section>")


def write_html_report(path: str | os.PathLike, results: Sequence[ReportEntry | dict], *,
                      title: str = "fpt identify report", notes: Sequence[str] = ()) -> Path:
    """Write one self-contained HTML file for ``results``; ``notes`` (e.g. the operating point) go on top."""
    entries = [ReportEntry.coerce(r) for r in results]
    counts = {k: sum(e.verdict.kind == k for e in entries) for k in KINDS}
    summary = ", ".join(f"{n} {k}" for k, n in counts.items() if n)
    head = [f"<h1>{html.escape(title)}</h1>",
            f'<p class="meta">{len(entries)} image(s): {html.escape(summary or "none")}</p>',
            f'<p class="meta">written {utc_timestamp()} by fpforensics {html.escape(__version__)}</p>']
    head += [f'<p class="meta">{html.escape(display_name(n))}</p>' for n in notes]
    doc = ("<!DOCTYPE html>\n<html lang=\"en\"><head><meta charset=\"utf-8\">" + html_stamp(REPORT_KIND) +
           f'<meta http-equiv="Content-Security-Policy" content="{CSP}">'
           '<meta name="viewport" content="width=device-width, initial-scale=1">'
           f"<title>{html.escape(title)}</title><style>{CSS}</style></head><body>"
           + "".join(head) + "".join(_card(e) for e in entries) + "</body></html>\n")
    out = Path(path)
    out.write_text(doc, encoding="utf-8")
    return out
