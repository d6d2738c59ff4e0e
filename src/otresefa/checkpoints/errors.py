"""Errors raised while reading checkpoints: each names the file and the problem."""


class CheckpointError(ValueError):
    """The file is not a generator checkpoint this library can read."""


class UnsafeCheckpointError(CheckpointError):
    """The pickle asks for code outside the allow-list (it could execute arbitrary code)."""


class UnsupportedCheckpointError(CheckpointError):
    """A recognised checkpoint of an architecture this library does not implement yet."""
