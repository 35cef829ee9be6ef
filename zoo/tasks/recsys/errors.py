"""The recommenders' own error, below every recommender module so that each can raise it."""

from zoo.errors import ZooError


class RecsysModelError(ZooError, ValueError):
    """A recommender used with data it was not built for (sizes or id maps differ), or misconfigured."""
