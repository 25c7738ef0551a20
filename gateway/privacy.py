"""Card UIDs never leave the school in clear: the gateway stores and forwards a keyed pseudonym."""

import hmac


def card_pseudonym(school_secret: str, card_uid: str) -> str:
    """HMAC-SHA256 of the card UID under the school's secret, as 32 hex digits."""
    return hmac.digest(school_secret.encode(), card_uid.lower().encode(), "sha256")[:16].hex()
