"""One root exception; stage scripts print its message and exit non-zero."""


class EmotionError(Exception):
    """An expected failure: bad input, a missing file, a mismatched artifact."""


class LabelError(EmotionError):
    """A label, class map or label-name list that cannot be used."""


class SchemaError(EmotionError):
    """An HDF5 file or artifact that is not what the stage expects."""


class MediaError(EmotionError):
    """Media that cannot be decoded or used (corrupt, empty, silent, too large)."""


class UndecodableMediaError(MediaError):
    """Bytes that no decoder reads as audio or video (the service answers 415)."""


class MediaTooLongError(MediaError):
    """Media longer than the configured maximum (the service answers 413)."""


class ArtifactError(EmotionError):
    """Saved models that are missing, unreadable, or do not belong together."""
