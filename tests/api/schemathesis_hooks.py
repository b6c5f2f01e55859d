"""schemathesis hooks (SCHEMATHESIS_HOOKS=tests.api.schemathesis_hooks): msgpack bodies out and
in, so that the property-based run covers both media types the API speaks."""

from __future__ import annotations

from typing import Any

import msgpack
import schemathesis


def representable(value: Any) -> Any:
    """`value` with integers beyond 64 bits as floats: msgpack has no wider integer, so a msgpack
    client can only send them so."""
    if isinstance(value, dict):
        return {k: representable(v) for k, v in value.items()}
    if isinstance(value, list):
        return [representable(v) for v in value]
    if isinstance(value, int) and not isinstance(value, bool) and not -(2**63) <= value < 2**64:
        return float(value)
    return value


@schemathesis.serializer("application/msgpack")
def to_msgpack(ctx: Any, value: Any) -> bytes:
    """A generated body as msgpack."""
    packed: bytes = msgpack.packb(representable(value), use_bin_type=True)
    return packed


@schemathesis.deserializer("application/msgpack")
def from_msgpack(ctx: Any, response: Any) -> Any:
    """A msgpack answer, for the response checks."""
    return msgpack.unpackb(response.content, raw=False)
