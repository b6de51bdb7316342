"""Every default of the method in one place, shared by the CLI and the Python API.

The numbers are those of METHOD.md (the paper's), so a change here is a change of method.
"""

from __future__ import annotations

DEFAULTS: dict[str, object] = {
    # 1.1 residual spectrum
    "crop_size": 128,
    "denoiser_sigma": 1.0,  # on the 0..255 scale
    "dncnn_depth": 17,
    "dncnn_channels": 64,
    # 1.2 synthetic models
    "synth_width": 32,
    "synth_seeds": 20,
    "synth_eta": 0.005,
    # 1.3 extractor training
    "batch_size": 200,
    "lr": 1e-4,
    "epochs": 40,
    "triplet_margin": 0.3,
    # 1.4 use
    "grid": 3,
    "shots": 10,
    "verify_threshold": 0.81,
    # 1.6 FFD
    "ffd_images_per_model": 100,
}
