"""Hostile input at the edge (SPEC §4 input limits): a 4xx problem naming the field, never a 5xx,
nothing stored that cannot be rendered; the regressions of what a black-box audit saw."""

from __future__ import annotations

import asyncio
import gzip
import json
import zlib
from typing import Any

import msgpack
import pytest
from aiohttp import web
from aiohttp.test_utils import TestClient

from router.config import Role
from router.domain.models import MAX_DATA_DEPTH
from tests.api.conftest import auth
from tests.api.test_interactions import agent_on, call

Client = TestClient[web.Request, web.Application]


def nested(depth: int, leaf: Any = None) -> Any:
    """`depth` levels of lists around `leaf` (a scalar leaf adds no level)."""
    value = leaf
    for _ in range(depth):
        value = [value]
    return value


async def raw_post(
    client: Client, path: str, raw: bytes, media: str = "application/json", method: str = "POST"
) -> Any:
    headers = {**auth(), "Content-Type": media}
    async with client.request(method, path, data=raw, headers=headers) as resp:
        assert resp.content_type == "application/problem+json" or resp.status < 400
        return resp.status, await resp.json(content_type=None)


def fields(body: dict[str, Any]) -> list[str]:
    return [e["field"] for e in body["errors"]]


async def test_data_nested_973_levels_is_refused_and_streams_keep_working(client: Client) -> None:
    # Seen: accepted (201), then its offer event broke every event stream for ever.
    await agent_on(client, "a1", {"support": 2})
    text = '{"queue":"support","data":' + "[" * 973 + "]" * 973 + "}"
    status, body = await raw_post(client, "/v1/interactions", text.encode())
    assert (status, fields(body)) == (422, ["data"])
    assert body["errors"][0]["message"] == f"must nest at most {MAX_DATA_DEPTH} levels"
    packed = msgpack.packb({"queue": "support", "data": {"k": nested(972)}})
    status, body = await raw_post(client, "/v1/interactions", packed, "application/msgpack")
    assert (status, fields(body)) == (422, ["data"])
    ok = {"id": "c1", "queue": "support", "data": {"k": nested(MAX_DATA_DEPTH - 1, 1)}}
    await call(client, "POST", "/v1/interactions", json=ok, expect=201)  # data is level 1
    too_deep = {"queue": "support", "data": {"k": nested(MAX_DATA_DEPTH, 1)}}
    refused = await call(client, "POST", "/v1/interactions", json=too_deep, expect=422)
    assert fields(refused) == ["data"]
    async with asyncio.timeout(5), client.get("/v1/events?after=0&limit=3", headers=auth()) as resp:
        frames = [f for f in (await resp.text()).split("\n\n") if f]
    assert [f.split("\n")[1] for f in frames] == [
        "event: agent.state_changed",
        "event: interaction.queued",
        "event: interaction.offered",
    ]


@pytest.mark.parametrize(
    ("path", "method", "text", "field"),
    [
        # Seen: 500s with a traceback, text/plain.
        (
            "/v1/interactions",
            "POST",
            '{"queue":"chat","data":{"n":18446744073709551616}}',
            "data.n",
        ),
        (
            "/v1/interactions",
            "POST",
            '{"queue":"chat","data":{"n":-9223372036854775809}}',
            "data.n",
        ),
        ("/v1/agents/a1", "PUT", '{"skills":{},"name":"\\ud800"}', "name"),
        ("/v1/interactions", "POST", '{"queue":"chat","data":{"\\udfff":1}}', "data"),
        ("/v1/agents/a1", "PUT", '{"skills":' + "[" * 1000 + "]" * 1000 + "}", "skills"),
        ("/v1/interactions", "POST", "[" * 1000 + "]" * 1000, "body"),
        (
            "/v1/interactions",
            "POST",
            '{"queue":"chat","priority":18446744073709551616}',
            "priority",
        ),
    ],
)
async def test_out_of_range_integers_lone_surrogates_and_deep_bodies_are_a_422(
    client: Client, path: str, method: str, text: str, field: str
) -> None:
    headers = {**auth(), "Content-Type": "application/json"}
    async with client.request(method, path, data=text.encode(), headers=headers) as resp:
        body = await resp.json(content_type=None)
        assert (resp.status, resp.content_type) == (422, "application/problem+json"), body
    assert fields(body) == [field]


async def test_signed_64_bit_integers_are_stored_and_returned_exactly(client: Client) -> None:
    data = {"max": 2**63 - 1, "min": -(2**63)}
    created = await call(
        client, "POST", "/v1/interactions", json={"queue": "chat", "data": data}, expect=201
    )
    assert created["data"] == data


@pytest.mark.parametrize("constant", ["NaN", "Infinity", "-Infinity"])
async def test_non_json_constants_are_a_400(client: Client, constant: str) -> None:
    text = '{"queue":"chat","priority":' + constant + "}"
    status, body = await raw_post(client, "/v1/interactions", text.encode())
    assert (status, body["type"]) == (400, "/problems/malformed-body")


async def test_integers_may_be_written_with_a_fraction_of_zero(client: Client) -> None:
    # JSON Schema's `integer` (the OpenAPI document) accepts 5.0: so does the service.
    created = await call(
        client, "POST", "/v1/interactions", json={"queue": "chat", "priority": 5.0}, expect=201
    )
    assert created["priority"] == 5
    packed = msgpack.packb({"skills": {"support": 2.0}, "channels": {"voice": 1.0}})
    status, agent = await raw_post(client, "/v1/agents/a9", packed, "application/msgpack", "PUT")
    assert status == 201
    assert (agent["skills"], agent["channels"]) == ({"support": 2}, {"voice": 1})
    refused = await call(
        client, "POST", "/v1/interactions", json={"queue": "chat", "priority": 5.5}, expect=422
    )
    assert fields(refused) == ["priority"]


async def test_data_is_measured_as_compact_utf8_json(client: Client) -> None:
    # 4 bytes a character in UTF-8 (12 as JSON escapes): {"s":"..."} with 1,022 of them is 4,096.
    fits = {"s": "😀" * 1022}
    assert len(json.dumps(fits, separators=(",", ":"), ensure_ascii=False).encode()) == 4096
    await call(client, "POST", "/v1/interactions", json={"queue": "chat", "data": fits}, expect=201)
    over = {"s": "😀" * 1022 + "x"}
    body = await call(
        client, "POST", "/v1/interactions", json={"queue": "chat", "data": over}, expect=422
    )
    assert fields(body) == ["data"]


async def test_a_missing_body_is_a_422_where_the_document_requires_one(client: Client) -> None:
    # Seen: PUT /v1/queues/{name} with no body created a queue of defaults (the document
    # requires a body).
    body = await call(client, "PUT", "/v1/queues/empty", role=Role.ADMIN, expect=422)
    assert fields(body) == ["body"]
    await call(client, "GET", "/v1/queues/empty", expect=404)
    # The callback's body is optional (every field of it is).
    await call(client, "POST", "/v1/interactions", json={"id": "c1", "queue": "chat"}, expect=201)
    conflict = await call(client, "POST", "/v1/interactions/c1/callback", expect=409)
    assert conflict["type"] == "/problems/conflict"


async def test_an_unknown_field_is_a_422_even_when_null(client: Client) -> None:
    # Seen: PUT {"": null} replaced a queue with a queue of defaults (null counts as absent).
    before = await call(client, "GET", "/v1/queues/support")
    body = await call(
        client, "PUT", "/v1/queues/support", json={"": None}, role=Role.ADMIN, expect=422
    )
    assert body["errors"][0]["message"] == "unknown field"
    assert await call(client, "GET", "/v1/queues/support") == before
    body = await call(
        client, "POST", "/v1/interactions", json={"queue": "chat", "x": None}, expect=422
    )
    assert fields(body) == ["x"]
    # A known field's null is still absent.
    await call(
        client, "POST", "/v1/interactions", json={"queue": "chat", "priority": None}, expect=201
    )


async def test_the_idempotency_key_header_is_the_create_s_id(client: Client) -> None:
    headers = {**auth(), "Idempotency-Key": "pbx-call-1"}
    body = {"queue": "chat"}
    async with client.post("/v1/interactions", json=body, headers=headers) as resp:
        assert resp.status == 201
        assert (await resp.json())["id"] == "pbx-call-1"
    async with client.post("/v1/interactions", json=body, headers=headers) as resp:
        assert resp.status == 200  # a retry: the current record, not a second call
    async with client.post(
        "/v1/interactions", json={"id": "other", **body}, headers=headers
    ) as resp:
        assert resp.status == 422
        assert fields(await resp.json()) == ["id"]
    async with client.post(
        "/v1/interactions", json=body, headers={**auth(), "Idempotency-Key": "bad key"}
    ) as resp:
        assert resp.status == 422
        assert fields(await resp.json()) == ["Idempotency-Key"]


async def test_an_accept_after_the_caller_hung_up_is_offer_expired(client: Client) -> None:
    # Seen: `not-offered`, where every other withdrawn offer answers `offer-expired`.
    await agent_on(client, "a1", {"support": 2})
    created = await call(
        client, "POST", "/v1/interactions", json={"id": "c1", "queue": "support"}, expect=201
    )
    assert created["agent_id"] == "a1"
    await call(client, "DELETE", "/v1/interactions/c1")
    late = await call(
        client, "POST", "/v1/interactions/c1/accept", json={"agent_id": "a1"}, expect=409
    )
    assert late["type"] == "/problems/offer-expired"
    assert late["detail"].endswith(": the interaction has ended (abandoned)")
    stranger = await call(
        client, "POST", "/v1/interactions/c1/accept", json={"agent_id": "a2"}, expect=409
    )
    assert stranger["type"] == "/problems/not-offered"


async def test_an_empty_queue_filter_is_a_422_naming_it(client: Client) -> None:
    body = await call(client, "GET", "/v1/agents?queue=", expect=422)
    assert fields(body) == ["queue"]
    async with client.get("/v1/events?queue=", headers=auth()) as resp:
        assert resp.status == 422
        assert fields(await resp.json()) == ["queue"]


async def test_a_utf16_body_cannot_hide_its_nesting(client: Client) -> None:
    # Seen: a 500 (RecursionError); U+4E22 is the bytes 22 4E in UTF-16-LE, a quote to a check
    # that reads bytes, which then skipped the brackets after it.
    text = '{"a":"\u4e22","b":' + "[" * 3000 + "]" * 3000 + ',"c":"\u4e22"}'
    for encoding in ("utf-16-le", "utf-16-be", "utf-32"):
        status, body = await raw_post(client, "/v1/interactions", text.encode(encoding))
        assert (status, fields(body)) == (422, ["b"]), encoding
    shallow = '{"queue":"chat","data":{"k":"\u4e22"}}'.encode("utf-16")
    status, created = await raw_post(client, "/v1/interactions", shallow)
    assert (status, created["data"]) == (201, {"k": "\u4e22"})


@pytest.mark.parametrize("limit", ["%C2%B2", "9" * 5000, "0x10", "-1"])
@pytest.mark.parametrize("path", ["/v1/events?after=0&", "/v1/interactions?", "/v1/agents?"])
async def test_a_limit_of_other_digits_is_a_422(client: Client, path: str, limit: str) -> None:
    # Seen: a 500 (ValueError) for "\u00b2", which str.isdigit takes and int refuses.
    async with client.get(f"{path}limit={limit}", headers=auth()) as resp:
        body = await resp.json(content_type=None)
        assert (resp.status, resp.content_type) == (422, "application/problem+json"), body
    assert fields(body) == ["limit"]


async def test_a_compressed_body_is_a_415_and_never_inflated(client: Client) -> None:
    # Seen: 58 KB of gzip inflated to 60 MB stalled every request, without a key.
    body = json.dumps({"queue": "chat"}).encode()
    for coding, raw in (("gzip", gzip.compress(body)), ("deflate", zlib.compress(body))):
        headers = {**auth(), "Content-Type": "application/json", "Content-Encoding": coding}
        async with client.post("/v1/interactions", data=raw, headers=headers) as resp:
            problem = await resp.json(content_type=None)
            assert (resp.status, problem["type"]) == (415, "/problems/unsupported-media-type")
    assert client.server.runner is not None
    assert client.server.runner.server is not None
    assert client.server.runner.server._kwargs["auto_decompress"] is False


@pytest.mark.parametrize("media", ["application/octet-stream", "text/plain", "garbled"])
async def test_a_body_of_another_declared_media_type_is_a_415(client: Client, media: str) -> None:
    status, problem = await raw_post(client, "/v1/interactions", b'{"queue":"chat"}', media)
    assert (status, problem["type"]) == (415, "/problems/unsupported-media-type")
    no_type = ["Content-Type"]
    raw = b'{"queue":"chat"}'
    async with client.post(
        "/v1/interactions", data=raw, headers=auth(), skip_auto_headers=no_type
    ) as resp:
        assert resp.status == 201  # no Content-Type: JSON


@pytest.mark.parametrize("token", [b"\xff", b"platform-key\xe9", b"\xed\xa0\x80"])
async def test_a_key_of_bytes_that_are_not_utf8_is_a_401(client: Client, token: bytes) -> None:
    url = client.make_url("/v1/queues")
    reader, writer = await asyncio.open_connection(url.host, url.port)
    writer.write(
        b"GET /v1/queues HTTP/1.1\r\nHost: x\r\nConnection: close\r\n"
        b"Authorization: Bearer " + token + b"\r\n\r\n"
    )
    await writer.drain()
    head, _, body = (await reader.read()).partition(b"\r\n\r\n")
    writer.close()
    assert head.split(b"\r\n")[0] == b"HTTP/1.1 401 Unauthorized"
    assert json.loads(body)["type"] == "/problems/unauthorized"
