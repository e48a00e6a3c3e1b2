"""API-key authentication for every route except /healthz and /readyz (there is no open mode)."""

from __future__ import annotations

import hashlib
import hmac
from collections.abc import Iterable
from typing import Annotated

from fastapi import HTTPException, Request, Security, status
from fastapi.security import APIKeyHeader

from .settings import key_digest

api_key_header = APIKeyHeader(name="X-API-Key", auto_error=False, description="API key")


class ApiKeyAuth:
    """Keys are kept as sha256 digests and compared in constant time. No keys: nothing passes."""

    def __init__(self, entries: Iterable[str]) -> None:
        self._digests = [key_digest(entry) for entry in entries]

    def accepts(self, key: str) -> bool:
        return self.verify(key) is not None

    def verify(self, key: str) -> bytes | None:
        """The key's sha256 digest when `key` is valid, else None."""
        candidate = hashlib.sha256(key.encode()).digest()
        # Compare against every digest so the time taken does not reveal which one matched.
        matches = [hmac.compare_digest(candidate, digest) for digest in self._digests]
        return candidate if any(matches) else None


async def require_api_key(
    request: Request, key: Annotated[str | None, Security(api_key_header)]
) -> None:
    """401 unless the X-API-Key is valid; then `request.state.api_key_digest` is its sha256
    (never logged or stored): what job ownership is derived from."""
    auth: ApiKeyAuth = request.app.state.auth
    digest = None if key is None else auth.verify(key)
    if digest is None:
        raise HTTPException(
            status_code=status.HTTP_401_UNAUTHORIZED,
            detail="missing or invalid API key",
            headers={"WWW-Authenticate": "ApiKey"},
        )
    request.state.api_key_digest = digest
