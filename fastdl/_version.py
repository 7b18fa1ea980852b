"""The single source of fastdl's version."""

__version__ = "0.1.0"
