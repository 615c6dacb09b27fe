"""Multimodal emotion recognition from faces and speech, with anomaly detection."""

__version__ = "0.3.0"  # the one place; pyproject.toml reads it
