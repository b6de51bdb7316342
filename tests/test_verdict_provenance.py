"""Provenance records and the name escaping used wherever names are shown."""

from __future__ import annotations

import hashlib
import json
import os
import re
from pathlib import Path

import numpy as np

from fpforensics import __version__
from fpforensics.verdict.names import csv_field, display_name
from fpforensics.verdict.provenance import ExtractorRef, Provenance, sha256_file, sha256_file_cached, utc_timestamp


def test_sha256_matches_hashlib_across_chunks(tmp_path):
    data = np.random.default_rng(0).bytes(3 * (1 << 20) + 123)  # several 1 MiB chunks and a tail
    path = tmp_path / "big.bin"
    path.write_bytes(data)
    assert sha256_file(path) == hashlib.sha256(data).hexdigest()
    (tmp_path / "empty").write_bytes(b"")
    assert sha256_file(tmp_path / "empty") == hashlib.sha256(b"").hexdigest()


def test_cached_hash_follows_file_changes(tmp_path):
    path = tmp_path / "w.pt"
    path.write_bytes(b"one")
    assert sha256_file_cached(path) == hashlib.sha256(b"one").hexdigest()
    path.write_bytes(b"other")
    os.utime(path, ns=(1, 1))
    assert sha256_file_cached(path) == hashlib.sha256(b"other").hexdigest()


def test_provenance_record(tmp_path):
    img = tmp_path / "q.png"
    img.write_bytes(b"\x89PNG fake bytes")
    ckpt = tmp_path / "extractor.pt"
    ckpt.write_bytes(b"weights")
    ref = ExtractorRef.of("resnet18:abc", ckpt)
    assert ref.file_sha256 == hashlib.sha256(b"weights").hexdigest() and ref.file_name == "extractor.pt"
    assert ExtractorRef.of("spectral[median3x3]", "spectral").file_sha256 is None
    prov = Provenance.for_image(img, ref, {"name": "calibrated", "threshold": 0.9})
    d = json.loads(json.dumps(prov.to_dict()))
    assert list(d) == ["image_sha256", "tool_version", "extractor", "extractor_sha256", "operating_point", "timestamp"]
    assert d["image_sha256"] == hashlib.sha256(b"\x89PNG fake bytes").hexdigest()
    assert d["tool_version"] == __version__ and d["extractor"] == "resnet18:abc"
    assert d["operating_point"]["threshold"] == 0.9
    assert re.fullmatch(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\dZ", d["timestamp"])
    assert re.fullmatch(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\dZ", utc_timestamp())


def test_display_name_escapes_what_could_act():
    assert display_name("a\rb\nc\td.png") == "a\\rb\\nc\\td.png"
    shown = display_name("\x1b[31mred\x1b[0m.png\x07")
    assert "\x1b" not in shown and shown == "\\x1b[31mred\\x1b[0m.png\\x07"
    assert display_name("\x9b2J") == "\\x9b2J"  # the one-byte CSI
    assert display_name(b"caf\xe9.png") == "caf\\xe9.png"  # latin-1 bytes: not UTF-8
    assert display_name(b"caf\xc3\xa9.png") == "caf\u00e9.png"  # valid UTF-8 is shown as is
    assert display_name("invoice\u202egnp.exe") == "invoice\\u202egnp.exe"  # right-to-left override
    assert display_name(Path("dir") / "x y.png") == os.path.join("dir", "x y.png")
    long = "StableDiffusion_DiscordBeta_Jul2022__" + "very-long-prompt-" * 20 + ".png"
    assert display_name(long) == long  # never cut


def test_display_name_never_raises_and_is_printable():
    rng = np.random.default_rng(0)
    for _ in range(300):
        raw = rng.bytes(int(rng.integers(1, 40)))
        shown = display_name(raw)
        assert shown.isprintable()
        shown.encode("utf-8")  # no lone surrogates left


def test_csv_field_guards_formulas():
    assert csv_field("=HYPERLINK(\"x\").png") == "'=HYPERLINK(\"x\").png"
    assert csv_field("@cmd.png") == "'@cmd.png" and csv_field("ok.png") == "ok.png"
    assert csv_field("a\nb") == "a\\nb"
