"""Security headers on every response: the console runs under a Content-Security-Policy that allows no
inline script or style, no page of the service may be framed, and no response is sniffed for its type."""

from starlette.datastructures import MutableHeaders
from starlette.types import ASGIApp, Message, Receive, Scope, Send

# The console's pages load their script and style only from cloud/web/static; its charts are inline SVG
# markup (attributes, not style), and work-order photos come from the service itself.
CONSOLE_POLICY = (
    "default-src 'self'; script-src 'self'; style-src 'self'; img-src 'self'; connect-src 'self'; "
    "object-src 'none'; base-uri 'none'; form-action 'self'; frame-ancestors 'none'"
)
# The interactive API documentation is FastAPI's: Swagger UI and ReDoc from their CDN, started by an
# inline script. It gets a policy of its own (and can be switched off: Settings.api_docs).
DOCS_POLICY = (
    "default-src 'self'; script-src 'self' 'unsafe-inline' https://cdn.jsdelivr.net; "
    "style-src 'self' 'unsafe-inline' https://cdn.jsdelivr.net https://fonts.googleapis.com; "
    "font-src https://fonts.gstatic.com; img-src 'self' data: https://fastapi.tiangolo.com https://cdn.redoc.ly; "
    "worker-src 'self' blob:; connect-src 'self'; object-src 'none'; base-uri 'none'; frame-ancestors 'none'"
)
COMMON_HEADERS = (
    ("X-Frame-Options", "DENY"),
    ("X-Content-Type-Options", "nosniff"),
    # Console URLs carry ids and filters; other sites learn nothing of them from links followed.
    ("Referrer-Policy", "same-origin"),
)


class SecurityHeaders:
    """ASGI middleware adding the headers to each HTTP response that does not set them itself."""

    def __init__(self, app: ASGIApp, *, docs_paths: frozenset[str] = frozenset()) -> None:
        self.app = app
        self.docs_paths = docs_paths
        self.console_headers = (("Content-Security-Policy", CONSOLE_POLICY), *COMMON_HEADERS)
        self.docs_headers = (("Content-Security-Policy", DOCS_POLICY), *COMMON_HEADERS)

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        added = self.docs_headers if scope["path"] in self.docs_paths else self.console_headers

        async def send_with_headers(message: Message) -> None:
            if message["type"] == "http.response.start":
                headers = MutableHeaders(scope=message)
                for name, value in added:
                    headers.setdefault(name, value)
            await send(message)

        await self.app(scope, receive, send_with_headers)
