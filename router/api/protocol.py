"""HTTP protocol errors as problems, and aiohttp's own logs without request data.

aiohttp answers a request its parser refuses (a header line over 8,190 bytes or with a control
byte, a NUL in the path, an unknown method, a malformed request line) before any handler or
middleware runs, as text/plain, and logs the exception, whose message quotes the raw line, e.g.
`Authorization: Bearer <key>`. `ServiceRunner` serves the application with a request handler
that answers those as problem+json and logs the error's kind only; `quiet_aiohttp_logs` strips
exception details and tracebacks from every record of aiohttp's loggers, and drops its access
log (which would write query strings): no header value, body or query string reaches a log.
"""

from __future__ import annotations

import asyncio
import logging
from typing import Any, cast

from aiohttp import web
from aiohttp.http_exceptions import BadHttpMessage
from aiohttp.http_parser import HttpParser
from aiohttp.web_protocol import RequestHandler
from aiohttp.web_request import BaseRequest

from router.api.http import InternalError, problem
from router.errors import RouterError

log = logging.getLogger("router.api")

AIOHTTP_LOGGERS = ("aiohttp.server", "aiohttp.web", "aiohttp.internal", "aiohttp.access")


class MalformedRequest(RouterError):
    status = 400
    type = "/problems/malformed-request"
    title = "Malformed HTTP request"


MAX_HEAD_BYTES = 32 * 1024
"""The bytes of one request head (request line and headers) at most: aiohttp limits each line
(8,190 bytes) and the number of headers (128), not their sum, so without this an unfinished head
of 128 long headers held about 2 MiB of a connection's memory, without any key."""


def _head_size(message: Any) -> int:
    """The bytes of a parsed request head as sent: request line, header lines, blank line."""
    line = len(getattr(message, "method", "")) + len(getattr(message, "path", "")) + 14
    headers = getattr(message, "raw_headers", ())
    return line + sum(len(name) + len(value) + 4 for name, value in headers)


class HeadLimit:
    """aiohttp's request parser, refusing a request head of more than MAX_HEAD_BYTES: a parsed
    head by its headers, an unfinished one by the bytes fed while no body is being read."""

    def __init__(self, parser: Any) -> None:
        self._parser = parser
        self._head_bytes = 0
        self._body: Any = None
        self.message_consumed = parser.message_consumed  # once a request: no __getattr__

    def feed_data(self, data: bytes) -> tuple[Any, bool, bytes]:
        """Parse `data`; BadHttpMessage (a 400) once the head being read is too large."""
        reading_body = self._body is not None and not self._body.is_eof()
        messages, upgraded, tail = self._parser.feed_data(data)
        if messages:
            for message, _ in messages:
                self._check(_head_size(message))
            self._head_bytes, self._body = 0, messages[-1][1]
        elif not reading_body:
            self._head_bytes += len(data)
            self._check(self._head_bytes)
        return messages, upgraded, tail

    @staticmethod
    def _check(size: int) -> None:
        if size > MAX_HEAD_BYTES:
            raise BadHttpMessage(f"request head over {MAX_HEAD_BYTES} bytes")

    def __getattr__(self, name: str) -> Any:
        return getattr(self._parser, name)


class ProblemRequestHandler(RequestHandler):
    """aiohttp's connection handler, answering the requests its parser refuses as problems, and
    refusing request heads over MAX_HEAD_BYTES."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self._parser = cast("HttpParser[Any]", HeadLimit(self._parser))

    def handle_error(
        self,
        request: BaseRequest,
        status: int = 500,
        exc: BaseException | None = None,
        message: str | None = None,
    ) -> web.StreamResponse:
        """The problem+json answer to a request that never reached the application; logged
        with the error's kind only (its message may quote the request)."""
        kind = type(exc).__name__ if exc is not None else "error"
        if isinstance(exc, ConnectionError):
            log.info("a client went away mid-request (%s)", kind)
            raise exc
        if status >= 500:
            log.error("HTTP %d before the application: %s", status, kind)
            error: RouterError = InternalError("an unexpected error; it was logged without data")
        else:
            log.info("malformed HTTP request refused (%d): %s", status, kind)
            error = MalformedRequest(f"the HTTP request could not be parsed ({kind})")
            error.status = status
        if request.writer.output_size > 0:
            raise ConnectionError("the response has begun: no error response can follow")
        response = problem(error)
        response.force_close()  # as aiohttp's own: what follows on it may not be a request
        return response


class ProblemServer(web.Server):
    """aiohttp's low-level server, with `ProblemRequestHandler` for each connection."""

    def __call__(self) -> RequestHandler:
        """The protocol of a new connection (the asyncio protocol factory)."""
        # The same arguments web.Server gives its own RequestHandler.
        return ProblemRequestHandler(self, loop=self._loop, **self._kwargs)


class ServiceRunner(web.AppRunner):
    """An AppRunner whose connections answer HTTP protocol errors as problem+json."""

    async def _make_server(self) -> web.Server:
        base = await super()._make_server()  # starts the application
        # The runner's options, as AppRunner gives them to web.Server.
        return ProblemServer(
            base.request_handler,
            request_factory=base.request_factory,
            loop=asyncio.get_running_loop(),
            **self._kwargs,
        )


class RequestDataFilter(logging.Filter):
    """Keeps request data out of aiohttp's log records: exception messages and tracebacks
    become the exception's type; access log records are dropped."""

    def filter(self, record: logging.LogRecord) -> bool:
        """Rewrite `record` in place; False drops it."""
        if record.name == "aiohttp.access":
            return False
        if record.exc_info:
            exc = record.exc_info[1]
            kind = type(exc).__name__ if exc is not None else "error"
            record.msg = f"{record.getMessage()} ({kind})"
            record.args = None
            record.exc_info = None
            record.exc_text = None
        record.stack_info = None
        return True


_FILTER = RequestDataFilter()


def quiet_aiohttp_logs() -> None:
    """Install `RequestDataFilter` on aiohttp's loggers (once)."""
    for name in AIOHTTP_LOGGERS:
        logger = logging.getLogger(name)
        if _FILTER not in logger.filters:
            logger.addFilter(_FILTER)


IDLE_TIMEOUT_S = 75.0
"""A connection with no request in progress is closed after this long: idle keep-alive
connections, and connections that never complete a request head (half-sent requests)."""


def service_runner(app: web.Application, **options: Any) -> ServiceRunner:
    """The runner of the service: problems for protocol errors, idle connections closed after
    IDLE_TIMEOUT_S, no access log (it would write query strings), and bodies never inflated: a
    compressed body is refused (read_body), and aiohttp would otherwise inflate it as it arrives,
    whatever the handler does with it (60 MB out of 58 KB stalled every request)."""
    return ServiceRunner(
        app,
        access_log=None,
        keepalive_timeout=IDLE_TIMEOUT_S,
        auto_decompress=False,
        **options,
    )
