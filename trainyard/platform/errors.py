"""Errors the platform's services raise; each message is one line for the user."""


class PlatformError(ValueError):
    pass


class NotFound(PlatformError):
    pass


class Conflict(PlatformError):
    """A duplicate name, or an action the object's state does not allow right now."""


class Refused(PlatformError):
    """A request that can never succeed as asked (e.g. more devices than the cluster has)."""
