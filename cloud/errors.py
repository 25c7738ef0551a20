"""Exceptions of the cloud's data layer; the API layer maps them to HTTP responses."""


class CloudError(Exception):
    """Base of every error the cloud package raises on purpose."""


class NotFound(CloudError):
    """The thing asked for does not exist, or the caller may not know that it does."""


class AccessDenied(CloudError):
    """The caller's role or school does not allow this."""


class InvalidInput(CloudError):
    """Input that breaks a rule of the domain; the message says which."""


class AlreadyExists(CloudError):
    """A thing with the same identity is already stored."""


class UnsupportedDatabase(CloudError):
    """The database URL names a dialect the cloud does not run on."""


class InUse(CloudError):
    """The thing cannot be removed or changed so while other records still refer to it."""
