"""What makes an admin token unfit to guard real money.

The bearer token of ``POST /kill`` and ``POST /resume`` lets whoever holds it resume trading.
Live mode refuses a weak one (a config error at ``admin.token``, exit 2); paper mode accepts it
with a warning at startup and a note from ``hedgerd check-config``. No admin token at all stays
allowed: the HTTP controls are then disabled, and signals and the kill file still work.
"""

from __future__ import annotations

MIN_ADMIN_TOKEN_LENGTH = 32
GENERATE_HINT = "generate one with `openssl rand -hex 32`"

KNOWN_PLACEHOLDERS = frozenset({
    "replace-with-a-long-random-token",  # what deploy/k8s/secret.yaml used to ship
    "hedgerd-demo-token",  # docker-compose.yml's paper demo default
    "changeme", "change-me", "replace-me", "secret", "token", "password", "admin", "test",
})
# Words that mark a value copied from an example rather than generated.
_PLACEHOLDER_MARKERS = ("replace", "changeme", "change-me", "change_me", "placeholder", "example", "demo-token")


def admin_token_weakness(token: str) -> str | None:
    """Why ``token`` must not guard live trading, or None if it may; the answer never
    contains the token (nor its length)."""
    lowered = token.strip().lower()
    if lowered in KNOWN_PLACEHOLDERS or any(marker in lowered for marker in _PLACEHOLDER_MARKERS):
        return "is a known placeholder (a value from an example or a demo)"
    if len(token) < MIN_ADMIN_TOKEN_LENGTH:
        return f"is shorter than {MIN_ADMIN_TOKEN_LENGTH} characters"
    return None
