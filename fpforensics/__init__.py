"""fpforensics: zero-shot attribution of AI-generated images to their source model."""

__version__ = "0.1.0"

__all__ = ["__version__"]
