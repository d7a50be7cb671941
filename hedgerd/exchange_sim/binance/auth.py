"""Binance request authentication: API-key header, HMAC-SHA256 signature, timestamp window."""

from __future__ import annotations

import hashlib
import hmac
from collections.abc import Mapping

from hedgerd.exchange_sim.model import ApiError

MAX_RECV_WINDOW = 60_000
DEFAULT_RECV_WINDOW = 5_000
FUTURE_TOLERANCE_MS = 1_000


def hmac_sha256(secret: str, payload: str) -> str:
    """Lower-case hex HMAC-SHA256 of ``payload`` under ``secret``."""
    return hmac.new(secret.encode(), payload.encode(), hashlib.sha256).hexdigest()


def split_signature(raw: str) -> tuple[str, str | None]:
    """Remove the ``signature`` parameter from a raw (still encoded) query or body."""
    if not raw:
        return "", None
    kept: list[str] = []
    signature: str | None = None
    for part in raw.split("&"):
        if part.startswith("signature="):
            signature = part[len("signature="):]
        else:
            kept.append(part)
    return "&".join(kept), signature


def rest_signature_payload(raw_query: str, raw_body: str) -> tuple[str, str | None]:
    """Binance's ``totalParams``: query string then body, each without the signature."""
    query, sig_q = split_signature(raw_query)
    body, sig_b = split_signature(raw_body)
    return query + body, sig_b if sig_b is not None else sig_q


def ws_signature_payload(params: Mapping[str, object]) -> str:
    """WebSocket API payload: every param but ``signature``, sorted by key, ``k=v`` joined by ``&``."""
    items = sorted((k, v) for k, v in params.items() if k != "signature")
    return "&".join(f"{k}={_ws_value(v)}" for k, v in items)


def _ws_value(value: object) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    return str(value)


def check_api_key(header_value: str | None, api_key: str) -> None:
    """-2014 when the header is missing or malformed, -2015 when the key is unknown."""
    if not header_value:
        raise ApiError(-2014, "API-key format invalid.", 401)
    if not hmac.compare_digest(header_value.encode(), api_key.encode()):
        raise ApiError(-2015, "Invalid API-key, IP, or permissions for action.", 401)


def check_timestamp(params: Mapping[str, str], now_ms: int) -> None:
    """Binance's rule: ``timestamp < now + 1000`` and ``now - timestamp <= recvWindow``."""
    raw_ts = params.get("timestamp")
    if raw_ts is None or raw_ts == "":
        raise ApiError(-1102, "Mandatory parameter 'timestamp' was not sent, was empty/null, or malformed.")
    try:
        timestamp = int(raw_ts)
    except ValueError:
        raise ApiError(-1100, "Illegal characters found in parameter 'timestamp'; legal range is "
                              "'^[0-9]{1,20}$'.") from None
    raw_window = params.get("recvWindow")
    recv_window = DEFAULT_RECV_WINDOW
    if raw_window not in (None, ""):
        try:
            recv_window = int(str(raw_window))
        except ValueError:
            raise ApiError(-1100, "Illegal characters found in parameter 'recvWindow'; legal range is "
                                  "'^[0-9]{1,20}$'.") from None
        if recv_window > MAX_RECV_WINDOW or recv_window <= 0:
            raise ApiError(-1131, f"recvWindow must be less than {MAX_RECV_WINDOW}")
    if timestamp >= now_ms + FUTURE_TOLERANCE_MS:
        raise ApiError(-1021, "Timestamp for this request was 1000ms ahead of the server's time.")
    if now_ms - timestamp > recv_window:
        raise ApiError(-1021, "Timestamp for this request is outside of the recvWindow.")


def check_signature(payload: str, signature: str | None, secret: str) -> None:
    if not signature:
        raise ApiError(-1102, "Mandatory parameter 'signature' was not sent, was empty/null, or malformed.")
    expected = hmac_sha256(secret, payload)
    if not hmac.compare_digest(expected.encode(), signature.lower().encode()):
        raise ApiError(-1022, "Signature for this request is not valid.")
