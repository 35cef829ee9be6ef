"""Errors zoo raises for bad input. The CLI prints them as one line (``zoo: error: ...``) without a traceback;
set ``ZOO_DEBUG=1`` to see the traceback."""


class ZooError(Exception):
    """Base of every error caused by user input (data, config, checkpoints)."""


class ConfigError(ZooError, ValueError):
    """A configuration value outside what is accepted; the message names the flag and the accepted values."""
