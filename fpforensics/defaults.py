"""Every default of the method and of the tool in one typed, frozen object read by the CLI and the API.

The numbers of the method are those of METHOD.md (the papers'), so a change here is a change of
method. ``fpt --help`` shows these values, and the Python functions take them as their defaults.
"""

from __future__ import annotations

from dataclasses import dataclass, fields


@dataclass(frozen=True)
class Defaults:
    """Defaults by stage; units in the comments (crops are ``crop_size`` x ``crop_size`` pixels)."""

    # METHOD 1.1: residual spectrum
    crop_size: int = 128  # pixels
    residual: str = "default"  # the shipped DnCNN when present, else the median residual
    denoiser_sigma: float = 1.0  # noise std on the 0..255 scale
    dncnn_depth: int = 17  # conv layers
    dncnn_channels: int = 64
    # METHOD 1.2: synthetic models
    synth_width: int = 32  # channels of the first block
    synth_seeds: int = 20  # models per architecture
    synth_eta: float = 0.005  # reconstruction loss that ends a model's training
    synth_max_steps: int = 1000  # step budget of a model that never reaches eta
    synth_batch_size: int = 8  # real crops per step
    synth_lr: float = 1e-3
    # METHOD 1.3: extractor and denoiser training
    extractor_batch_size: int = 200  # images per step (P x K)
    lr: float = 1e-4
    epochs: int = 40
    triplet_margin: float = 0.3
    denoiser_steps: int = 3000
    denoiser_batch_size: int = 64  # patches per step
    denoiser_patch: int = 40  # pixels
    denoiser_lr: float = 1e-3
    # METHOD 1.4: use (embedding, gallery, identification, verification)
    extractor: str = "default"  # the shipped extractor when present, else spectral
    grid: int = 3  # N x N sliding window of crops per image
    embed_batch_size: int = 64  # crops per forward pass
    precision: str = "auto"  # bf16 only where the hardware runs it natively
    shots: int = 10  # images per model that build its fingerprint
    top_k: int = 5  # models listed per query
    verify_threshold: float = 0.81  # cosine; the paper's, for the paper's extractor
    # METHOD 1.5: evaluation
    eval_repeats: int = 5  # seeded splits
    eval_pairs: int = 10000  # verification pairs, half same-model
    seed: int = 0
    pool_images: int = 20  # images per held-out synthetic model
    pool_models: int = 20  # held-out synthetic models at most
    # METHOD 1.6: Frechet Frequency Distance
    ffd_images_per_model: int = 100
    # METHOD 2: ManiFPT artifacts
    artifact_space: str = "freq"
    artifact_size: int = 64  # pixels, side of the rgb/freq image
    artifact_fit: str = "crop"
    artifact_batch_size: int = 32  # images per feature batch
    neighbour_chunk: int = 8192  # real features per nearest-neighbour block
    fdr_dim: int = 32  # PCA dimensions for FDR

    def __getitem__(self, key: str):
        """``DEFAULTS["grid"]``: mapping-style access, kept for code written against the old dict."""
        if key not in {f.name for f in fields(self)}:
            raise KeyError(key)
        return getattr(self, key)


DEFAULTS = Defaults()
