"""Errors zoo raises for bad input. The CLI prints them as one line (``zoo: error: ...``) without a traceback;
set ``ZOO_DEBUG=1`` to see the traceback."""


class ZooError(Exception):
    """Base of every error caused by user input (data, config, checkpoints)."""


class ConfigError(ZooError, ValueError):
    """A configuration value outside what is accepted; the message names the flag and the accepted values."""


class CheckpointError(ZooError, ValueError):
    """A checkpoint file that cannot be used: missing, empty, truncated, not a checkpoint, or one that needs code
    to unpickle (refused: zoo loads with ``weights_only=True``). The message names the file and which it is."""


class RunDirError(ZooError, OSError):
    """A run directory that cannot be created or written (read-only, missing parent, disk full)."""
