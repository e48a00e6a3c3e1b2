"""Job ids this service recognises without storage, and the owner recorded with each job.

The same scheme as the gateway's (contracts/README.md, "Job ids and owners", where there is one):
an id is uuid-shaped (RFC 9562 version 8, "custom"), bytes 0-9 random (74 bits once the version
and variant bits are set), bytes 10-15 a tag, HMAC-SHA256(sha256(API key), "job-id\\0" + bytes 0-9)
cut to 48 bits. The tag binds the id to the key that created the job, so GET /jobs/{id} tells
"issued to this caller, now gone" (410) from "never issued to this caller" (404: unknown, or
another key's job) with no Redis read: both 404 cases take the same path and the same time.
"""

from __future__ import annotations

import hashlib
import hmac
import secrets

NONCE_BYTES = 10
ID_BYTES = 16
VERSION = 0x80
# The owner of jobs submitted without an API key (tests, scripts calling Producer directly).
NO_OWNER = bytes(32)


def _tag(owner_key: bytes, nonce: bytes) -> bytes:
    mac = hmac.new(owner_key, b"job-id\0" + nonce, hashlib.sha256)
    return mac.digest()[: ID_BYTES - NONCE_BYTES]


def _format(raw: bytes) -> str:
    text = raw.hex()
    return f"{text[:8]}-{text[8:12]}-{text[12:16]}-{text[16:20]}-{text[20:]}"


def issue_job_id(owner_key: bytes) -> str:
    """A fresh job id for the caller whose API key digest is `owner_key`."""
    nonce = bytearray(secrets.token_bytes(NONCE_BYTES))
    nonce[6] = (nonce[6] & 0x0F) | VERSION
    nonce[8] = (nonce[8] & 0x3F) | 0x80
    return _format(bytes(nonce) + _tag(owner_key, bytes(nonce)))


def issued_to(job_id: str, owner_key: bytes) -> bool:
    """Whether `job_id` was issued to the caller whose API key digest is `owner_key`."""
    try:
        raw = bytes.fromhex(job_id.replace("-", ""))
    except ValueError:
        return False
    if len(raw) != ID_BYTES or raw[6] & 0xF0 != VERSION:
        return False
    return hmac.compare_digest(_tag(owner_key, raw[:NONCE_BYTES]), raw[NONCE_BYTES:])


def owner_id(owner_key: bytes) -> str:
    """The job hash's `owner`: the first 16 hex digits of sha256(sha256(API key)).

    Never the key or its digest (the digest is the tag's secret, and a valid `sha256:` entry of
    API_KEYS); the same value the gateway writes.
    """
    return hashlib.sha256(owner_key).hexdigest()[:16]
