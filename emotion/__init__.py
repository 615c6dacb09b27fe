"""Multimodal emotion recognition from faces and speech, with anomaly detection."""

__version__ = "0.1.0"
