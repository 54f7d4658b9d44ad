"""Errors sdprobe raises for bad input. The CLI turns each into a message and a non-zero exit."""


class SdprobeError(Exception):
    """Base class of sdprobe's own errors."""


class RunError(SdprobeError):
    """A run directory is missing, incomplete, or was made with a different configuration."""
