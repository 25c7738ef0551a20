"""Card pseudonyms: the gateway's fast HMAC equals the standard one, for any secret and card."""

import hashlib
import hmac

from hypothesis import given
from hypothesis import strategies as st

from gateway.privacy import CACHE_MAX, Pseudonymizer, card_pseudonym

uids = st.sampled_from([4, 7, 10]).flatmap(lambda n: st.binary(min_size=n, max_size=n)).map(bytes.hex)


@given(secret=st.text(min_size=16, max_size=200), uid=uids)
def test_pseudonym_is_hmac_sha256_of_the_uid(secret: str, uid: str) -> None:
    expected = hmac.new(secret.encode(), uid.encode(), hashlib.sha256).hexdigest()[:32]
    assert card_pseudonym(secret, uid) == expected
    assert card_pseudonym(secret, uid.upper()) == expected


def test_remembered_pseudonyms_stay_right_past_the_cache_size() -> None:
    pseudo = Pseudonymizer("school-secret-0123456789")
    uids = [f"{n:08x}" for n in range(CACHE_MAX + 10)]
    first = [pseudo(u) for u in uids]
    assert [pseudo(u) for u in uids] == first
    assert len(set(first)) == len(uids)
    assert first[7] == hmac.new(b"school-secret-0123456789", uids[7].encode(), hashlib.sha256).hexdigest()[:32]
