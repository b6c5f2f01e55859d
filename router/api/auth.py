"""API keys and roles (SPEC §5): bearer tokens compared as SHA-256 digests in constant time."""

from __future__ import annotations

import hashlib
import hmac
import os
from collections.abc import Mapping
from dataclasses import dataclass

from router.config import ApiKeyConfig, Role
from router.errors import ConfigError, FieldError, RouterError

REALM = "acd-router"


class Unauthorized(RouterError):
    """No key was sent: the challenge names the scheme keys are sent with (RFC 6750)."""

    status = 401
    type = "/problems/unauthorized"
    title = "Missing or invalid API key"
    challenge = f'Bearer realm="{REALM}"'


class UnknownKey(Unauthorized):
    """A key was sent, and it is none of the configured ones."""

    challenge = f'Bearer realm="{REALM}", error="invalid_token"'


class Forbidden(RouterError):
    status = 403
    type = "/problems/forbidden"
    title = "The key's role lacks this permission"


@dataclass(frozen=True)
class Principal:
    """Who made a request: the key's name (never the key) and its role."""

    name: str
    role: Role


INSECURE = Principal("insecure-mode", Role.ADMIN)


def digest(secret: str) -> bytes:
    """The SHA-256 digest of a key. A header's bytes that are not UTF-8 (aiohttp decodes them
    as surrogates) are digested as they came: no key matches them."""
    return hashlib.sha256(secret.encode(errors="surrogatepass")).digest()


@dataclass(frozen=True)
class Authenticator:
    """Known key digests; `insecure` lets every request in as admin (local experiments only)."""

    digests: tuple[tuple[bytes, Principal], ...]
    insecure: bool = False

    @classmethod
    def from_config(
        cls, keys: tuple[ApiKeyConfig, ...], insecure: bool, env: Mapping[str, str] | None = None
    ) -> Authenticator:
        """Digests of the configured keys; a key whose variable is unset or empty, or the same
        key as another, is an error."""
        env = os.environ if env is None else env
        found: list[tuple[bytes, Principal]] = []
        errors: list[FieldError] = []
        first: dict[bytes, int] = {}
        for i, key in enumerate(keys):
            if key.sha256:
                known, where = bytes.fromhex(key.sha256), f"keys[{i}].sha256"
            elif key.env and env.get(key.env):
                known, where = digest(env[key.env]), f"keys[{i}].env"
            else:
                errors.append(FieldError(f"keys[{i}].env", f"variable {key.env} is not set"))
                continue
            if known in first:
                # A shared secret would act with whichever role matched last: refuse it.
                message = f"is the same key as keys[{first[known]}]; each key needs its own"
                errors.append(FieldError(where, message))
                continue
            first[known] = i
            found.append((known, Principal(key.name, key.role)))
        if errors:
            raise ConfigError("; ".join(map(str, errors)), errors)
        if not found and not insecure:
            raise ConfigError(
                "no API key is configured; add [[keys]] or start with --insecure "
                "(local experiments only)"
            )
        return cls(tuple(found), insecure)

    def identify(self, authorization: str | None) -> Principal:
        """The principal of an `Authorization: Bearer …` header, or Unauthorized."""
        if self.insecure:
            return INSECURE
        scheme, _, token = (authorization or "").partition(" ")
        if scheme.lower() != "bearer" or not token.strip():
            raise Unauthorized("send Authorization: Bearer <key>")
        presented = digest(token.strip())
        match: Principal | None = None
        for known, principal in self.digests:  # every digest is compared: constant time
            if hmac.compare_digest(presented, known):
                match = principal
        if match is None:
            raise UnknownKey("unknown API key")
        return match


def authorize(principal: Principal, method: str, path: str, admin_only: bool = False) -> None:
    """Forbidden unless the role may do this (§5): monitor reads; platform all but admin work."""
    if principal.role == Role.ADMIN:
        return
    if admin_only:
        raise Forbidden(f"role {principal.role} may not do this; it needs admin")
    if principal.role == Role.MONITOR and method not in ("GET", "HEAD"):
        raise Forbidden("role monitor may only read")
    if (
        principal.role == Role.PLATFORM
        and path.startswith("/v1/queues")
        and method
        not in (
            "GET",
            "HEAD",
        )
    ):
        raise Forbidden("changing queues needs role admin")


def roles_for(method: str, path: str) -> tuple[Role, ...]:
    """The roles that may make a request (the API document's `x-roles`)."""
    allowed = []
    for role in Role:
        try:
            authorize(Principal("", role), method, path)
        except Forbidden:
            continue
        allowed.append(role)
    return tuple(allowed)
