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
        candidate = hashlib.sha256(key.encode()).digest()
        # Compare against every digest so the time taken does not reveal which one matched.
        matches = [hmac.compare_digest(candidate, digest) for digest in self._digests]
        return any(matches)


async def require_api_key(
    request: Request, key: Annotated[str | None, Security(api_key_header)]
) -> None:
    auth: ApiKeyAuth = request.app.state.auth
    if key is None or not auth.accepts(key):
        raise HTTPException(
            status_code=status.HTTP_401_UNAUTHORIZED,
            detail="missing or invalid API key",
            headers={"WWW-Authenticate": "ApiKey"},
        )
