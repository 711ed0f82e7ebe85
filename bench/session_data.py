"""Session data as a real site stores it, for the session benchmarks: what Django's own
SessionStore.encode writes (signed, compressed where that is shorter), 160-240 bytes.

Two kinds of visitor, as on a shop or a members' site: most logged in (user id, backend and
auth hash: 226-234 bytes), the rest anonymous with a CSRF token and a few of the site's own
keys (time zone, language, cart, recently viewed). An empty session (`e30=`, 4 bytes) made the
table a quarter of its real size and hid what a cleanup costs.
"""

import base64
import random

from django.conf import settings

LOGGED_IN_SHARE = 0.6
SIZES = range(160, 241)


def session_data_pool(count: int, *, secret_key: str, seed: int = 15) -> list[str]:
    """`count` distinct encoded sessions, signed with `secret_key` so the site can read them."""
    if not settings.configured:
        settings.configure(SECRET_KEY=secret_key)
    from django.contrib.sessions.backends.db import SessionStore

    store, rng = SessionStore(), random.Random(seed)
    pool: list[str] = []
    while len(pool) < count:
        data = store.encode(site_session(rng))
        if len(data) in SIZES:  # a few anonymous ones come out shorter: drawn again
            pool.append(data)
    return pool


def site_session(rng: random.Random) -> dict:
    """What one visitor's session holds."""
    return _logged_in(rng) if rng.random() < LOGGED_IN_SHARE else _anonymous(rng)


def _logged_in(rng: random.Random) -> dict:
    return {"_auth_user_id": str(rng.randint(1, 250_000)),
            "_auth_user_backend": "django.contrib.auth.backends.ModelBackend",
            "_auth_user_hash": rng.randbytes(32).hex()}


def _anonymous(rng: random.Random) -> dict:
    data: dict = {"_csrftoken": base64.urlsafe_b64encode(rng.randbytes(24)).decode()}
    if rng.random() < 0.6:
        data["django_timezone"] = rng.choice(["Europe/Paris", "America/New_York", "Asia/Tokyo", "UTC"])
    if rng.random() < 0.6:
        data["cart"] = {str(rng.randint(1, 9999)): rng.randint(1, 3) for _ in range(rng.randint(1, 4))}
    if rng.random() < 0.5:
        data["_language"] = rng.choice(["en", "fr", "de", "es-mx"])
    if rng.random() < 0.4:
        data["recently_viewed"] = [rng.randint(1, 99_999) for _ in range(rng.randint(1, 5))]
    return data
