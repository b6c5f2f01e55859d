"""Requests aiohttp's HTTP parser refuses: problem+json answers, and logs without their data."""

from __future__ import annotations

import asyncio
import json
import logging
import re
import sys

import pytest
from aiohttp import web
from aiohttp.test_utils import TestClient

from router.api import http
from router.api.protocol import RequestDataFilter
from router.config import Role
from tests.api.conftest import KEYS

Client = TestClient[web.Request, web.Application]
KEY = KEYS[Role.PLATFORM]


async def raw(client: Client, request: bytes) -> tuple[int, dict[str, str], bytes]:
    """Send bytes as they are; the status, headers and body of the answer."""
    server = client.server
    reader, writer = await asyncio.open_connection(server.host, server.port)
    try:
        writer.write(request)
        await writer.drain()
        async with asyncio.timeout(5):
            answer = await reader.read()
    finally:
        writer.close()
    head, _, body = answer.partition(b"\r\n\r\n")
    status_line, *lines = head.decode().split("\r\n")
    headers = {k.lower(): v.strip() for k, _, v in (line.partition(":") for line in lines)}
    return int(status_line.split()[1]), headers, body


@pytest.mark.parametrize(
    "request_bytes",
    [
        # Seen: text/plain 400s from the parser.
        b"GET /v1/queues HTTP/1.1\r\nHost: a\r\nX-Big: " + b"a" * 9000 + b"\r\n\r\n",
        b"GET /v1/que\x00ues HTTP/1.1\r\nHost: a\r\n\r\n",
        b"FOO /v1/queues HTTP/1.1\r\nHost: a\r\n\r\n",
        b"POST /v1/interactions HTTP/1.1\r\nHost: a\r\nContent-Type: application/json\r\n"
        b"Transfer-Encoding: chunked\r\n\r\nzz\r\n{}\r\n0\r\n\r\n",
        b"GET /v1/queues HTTP/1.1\r\nHost: a\r\nAuthorization: Bearer "
        + KEY.encode()
        + b"\x01\r\n\r\n",
    ],
    ids=["header-over-8190", "nul-in-path", "method-foo", "bad-chunking", "control-byte"],
)
async def test_requests_the_parser_refuses_are_problems(
    client: Client, request_bytes: bytes
) -> None:
    status, headers, body = await raw(client, request_bytes)
    assert status == 400
    assert headers["content-type"].startswith("application/problem+json")
    problem = json.loads(body)
    assert (problem["status"], problem["type"]) == (400, "/problems/malformed-request")


def head(*headers: bytes, line: bytes = b"GET /v1/queues HTTP/1.1") -> bytes:
    return b"\r\n".join([line, b"Host: a", *headers]) + b"\r\n"


async def test_a_request_head_over_32_kib_is_refused(client: Client) -> None:
    # Seen: 1,000 unfinished heads of 126 headers of 8,000 bytes (each within aiohttp's limits)
    # held 2 GiB, without a key.
    long = [b"X-H%d: " % i + b"a" * 7500 for i in range(5)]
    status, _, body = await raw(client, head(*long) + b"\r\n")
    assert (status, json.loads(body)["type"]) == (400, "/problems/malformed-request")
    # The request line counts too: 8 KB of it and 30 KB of headers, sent whole.
    line = b"GET /v1/queues?x=" + b"a" * 8000 + b" HTTP/1.1"
    status, _, _ = await raw(client, head(*long[:4], line=line) + b"\r\n")
    assert status == 400
    # Unfinished, sent a header at a time: refused once past the limit.
    reader, writer = await asyncio.open_connection(client.server.host, client.server.port)
    try:
        writer.write(head())
        for header in long:
            writer.write(header + b"\r\n")
            await writer.drain()
        async with asyncio.timeout(5):
            answer = await reader.read()
        assert answer.split(b"\r\n", 1)[0].split()[1] == b"400"
    finally:
        writer.close()
    # Heads under it pass, their bodies not counted: several requests on one connection, and a
    # body that comes after its head (JSON's whitespace makes it long).
    auth = b"Authorization: Bearer " + KEY.encode()
    text = b'{"queue": "chat"' + b" " * 60_000 + b"}"
    post = head(
        auth,
        *long[:4],
        b"Content-Type: application/json",
        b"Content-Length: %d" % len(text),
        line=b"POST /v1/interactions HTTP/1.1",
    )
    close = head(auth, b"Connection: close") + b"\r\n"
    status, _, _ = await raw(client, (post + b"\r\n" + text) * 2 + close)
    assert status == 201
    reader, writer = await asyncio.open_connection(client.server.host, client.server.port)
    try:
        # The head with the body's start, the rest of the body, the next request: read apart.
        for part in (post + b"\r\n" + text[:100], text[100:], close):
            writer.write(part)
            await writer.drain()
            await asyncio.sleep(0.05)
        async with asyncio.timeout(5):
            answer = await reader.read()
        assert re.findall(rb"HTTP/1\.[01] (\d{3}) ", answer) == [b"201", b"200"]
    finally:
        writer.close()


async def test_a_refused_header_line_never_reaches_the_log(
    client: Client, caplog: pytest.LogCaptureFixture
) -> None:
    # Seen: the parser's error, logged at ERROR, quoted `Authorization: Bearer <the key>`.
    caplog.set_level(logging.DEBUG)
    secret_line = b"Authorization: Bearer " + KEY.encode() + b"\x01"
    number = b"X-Caller: +358401234567\x7f"
    for line in (secret_line, number):
        status, _, _ = await raw(
            client, b"GET /v1/queues?caller=4321 HTTP/1.1\r\nHost: a\r\n" + line + b"\r\n\r\n"
        )
        assert status == 400
    assert caplog.records, "the refusals are logged"
    logged = "\n".join(caplog.text.splitlines() + [r.getMessage() for r in caplog.records])
    for secret in (KEY, "358401234567", "caller=4321"):
        assert secret not in logged


def test_aiohttp_records_lose_their_exception_details() -> None:
    try:
        raise ValueError("Authorization: Bearer sekrit")
    except ValueError:
        record = logging.LogRecord(
            "aiohttp.server", logging.ERROR, __file__, 1, "Error handling request from %s",
            ("127.0.0.1",), exc_info=sys.exc_info(),
        )  # fmt: skip
    assert RequestDataFilter().filter(record)
    assert record.exc_info is None
    assert record.getMessage() == "Error handling request from 127.0.0.1 (ValueError)"
    access = logging.LogRecord("aiohttp.access", logging.INFO, __file__, 1, "GET /?k=v", (), None)
    assert not RequestDataFilter().filter(access)


async def test_a_body_that_does_not_arrive_in_time_is_a_408_and_the_connection_closes(
    client: Client, monkeypatch: pytest.MonkeyPatch
) -> None:
    # Seen: a body trickled in (or never sent) held its connection for as long as it pleased.
    monkeypatch.setattr(http, "BODY_TIMEOUT_S", 0.2)
    reader, writer = await asyncio.open_connection(client.server.host, client.server.port)
    try:
        writer.write(
            head(
                b"Authorization: Bearer " + KEY.encode(),
                b"Content-Type: application/json",
                b"Content-Length: 100",
                line=b"POST /v1/interactions HTTP/1.1",
            )
            + b'\r\n{"queue":'
        )
        async with asyncio.timeout(5):
            status_line = await reader.readline()
            headers = (await reader.readuntil(b"\r\n\r\n")).decode().lower()
            length = int(re.findall(r"content-length: (\d+)", headers)[0])
            problem = json.loads(await reader.readexactly(length))
    finally:
        writer.close()
    assert status_line.split()[1] == b"408"
    assert problem["type"] == "/problems/request-timeout"
    assert "connection: close" in headers
