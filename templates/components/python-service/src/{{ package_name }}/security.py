"""API-key authentication for every route except /healthz and /readyz."""

from __future__ import annotations

import hashlib
import hmac
import logging
from collections.abc import Iterable
from typing import Annotated

from fastapi import HTTPException, Request, Security, status
from fastapi.security import APIKeyHeader

log = logging.getLogger(__name__)

api_key_header = APIKeyHeader(name="X-API-Key", auto_error=False, description="API key")


class ApiKeyAuth:
    """Keys are kept as sha256 digests and compared in constant time."""

    def __init__(self, entries: Iterable[str]) -> None:
        self._digests = [
            bytes.fromhex(entry.removeprefix("sha256:"))
            if entry.startswith("sha256:")
            else hashlib.sha256(entry.encode()).digest()
            for entry in entries
        ]
        if not self._digests:
            log.warning("API_KEYS is empty: authentication is DISABLED")

    @property
    def enabled(self) -> bool:
        return bool(self._digests)

    def accepts(self, key: str) -> bool:
        candidate = hashlib.sha256(key.encode()).digest()
        # Compare against every digest so the time taken does not reveal which one matched.
        matches = [hmac.compare_digest(candidate, digest) for digest in self._digests]
        return any(matches)


async def require_api_key(
    request: Request, key: Annotated[str | None, Security(api_key_header)]
) -> None:
    auth: ApiKeyAuth = request.app.state.auth
    if auth.enabled and (key is None or not auth.accepts(key)):
        raise HTTPException(
            status_code=status.HTTP_401_UNAUTHORIZED,
            detail="missing or invalid API key",
            headers={"WWW-Authenticate": "ApiKey"},
        )
