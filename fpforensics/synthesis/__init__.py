"""Synthetic generative models (METHOD 1.2): the architecture grid, packed training, the pool."""
