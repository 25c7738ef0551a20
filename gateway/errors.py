"""Exceptions of the gateway package."""


class GatewayError(Exception):
    """Base of every error the gateway raises on purpose."""


class ConfigError(GatewayError):
    """A configuration file or variable that cannot be used; the message says what to fix."""


class CloudError(GatewayError):
    """The cloud could not be reached or refused a request."""


class StoreUnwritable(GatewayError):
    """The store cannot write (disk full, read-only, I/O error, a damaged file): nothing more is stored or
    acknowledged until it can; the content of the request was not at fault, so it is retried, never
    quarantined."""


class StoreWorkerError(GatewayError):
    """The store worker failed a request, or died."""


class StoreWorkerLost(StoreWorkerError):
    """The store worker died or was replaced before it answered: the request may not have run, and is
    to be sent again (a new worker is started by the next request)."""
