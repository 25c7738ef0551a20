"""Exceptions of the gateway package."""


class GatewayError(Exception):
    """Base of every error the gateway raises on purpose."""


class ConfigError(GatewayError):
    """A configuration file or variable that cannot be used; the message says what to fix."""


class CloudError(GatewayError):
    """The cloud could not be reached or refused a request."""
