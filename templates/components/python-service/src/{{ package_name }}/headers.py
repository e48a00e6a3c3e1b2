"""Security headers on every response: the set helmet gives the Node services (OWASP's REST
baseline), with the strictest content security policy, since a JSON API serves no documents.

The values come from `secure` and are encoded once; each response gets a ready list appended.
The interactive docs pages (Swagger UI, ReDoc) are the one exception: they load scripts and styles
from a CDN and run an inline script, which `default-src 'none'` would block, so their policy only
forbids framing. Every other header is the same on them.
"""

from __future__ import annotations

from collections.abc import Iterable

from secure import (
    ContentSecurityPolicy,
    CrossOriginOpenerPolicy,
    CrossOriginResourcePolicy,
    CustomHeader,
    ReferrerPolicy,
    Secure,
    StrictTransportSecurity,
    XContentTypeOptions,
    XDnsPrefetchControl,
    XFrameOptions,
    XPermittedCrossDomainPolicies,
)
from starlette.types import ASGIApp, Message, Receive, Scope, Send

# What the API's responses may load, run or be framed by: nothing.
API_POLICY = (
    ContentSecurityPolicy()
    .default_src("'none'")
    .base_uri("'none'")
    .form_action("'none'")
    .frame_ancestors("'none'")
)
# The docs pages: anything they need, but never inside another site's frame.
DOCS_POLICY = ContentSecurityPolicy().frame_ancestors("'none'")


def security_headers(policy: ContentSecurityPolicy) -> Secure:
    """helmet's defaults, as the Node services send them, with `policy` and X-Frame-Options DENY."""
    return Secure(
        csp=policy,
        coop=CrossOriginOpenerPolicy().same_origin(),
        corp=CrossOriginResourcePolicy().same_origin(),
        referrer=ReferrerPolicy().no_referrer(),
        hsts=StrictTransportSecurity().max_age(31536000).include_subdomains(),
        xcto=XContentTypeOptions().nosniff(),
        xdfc=XDnsPrefetchControl().disable(),
        # What frame-ancestors 'none' says, for browsers that only read this header.
        xfo=XFrameOptions().deny(),
        xpcdp=XPermittedCrossDomainPolicies().none(),
        custom=[
            CustomHeader("Origin-Agent-Cluster", "?1"),
            CustomHeader("X-Download-Options", "noopen"),
            # The browsers' XSS auditor is gone or harmful; 0 turns off what is left of it.
            CustomHeader("X-XSS-Protection", "0"),
        ],
    )


def encoded(secure: Secure) -> list[tuple[bytes, bytes]]:
    """The headers as an ASGI response start carries them: lower-case names, latin-1 values."""
    return [
        (name.lower().encode("ascii"), value.encode("latin-1"))
        for name, value in secure.headers.items()
    ]


class SecurityHeadersMiddleware:
    """Pure ASGI: adds the headers to every HTTP response start, errors and 404s included."""

    def __init__(self, app: ASGIApp, docs_paths: Iterable[str | None] = ()) -> None:
        self.app = app
        self.docs_paths = frozenset(path for path in docs_paths if path)
        self.api_headers = encoded(security_headers(API_POLICY))
        self.docs_headers = encoded(security_headers(DOCS_POLICY))
        # The same names in both lists: only the policy's value differs.
        self.names = frozenset(name for name, _ in self.api_headers)

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        path: str = scope["path"]
        root: str = scope.get("root_path", "")
        if root and path.startswith(root):  # served under a prefix (uvicorn --root-path)
            path = path[len(root) :]
        extra = self.docs_headers if path in self.docs_paths else self.api_headers

        async def send_with_headers(message: Message) -> None:
            if message["type"] == "http.response.start":
                # Ours replace any the app set, so a response never carries two policies.
                headers = message.get("headers", [])
                kept = [(k, v) for k, v in headers if k.lower() not in self.names]
                message["headers"] = kept + extra
            await send(message)

        await self.app(scope, receive, send_with_headers)
