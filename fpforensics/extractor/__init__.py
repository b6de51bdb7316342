"""Fingerprint extractors: the interface, the training-free baselines, trained networks."""
