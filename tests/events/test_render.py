"""Every event type renders, as an SSE frame and a webhook body, from the largest and deepest
bodies that validation lets through (SPEC §4 input limits): nothing accepted that cannot be
stored, rendered and streamed."""

from __future__ import annotations

import json
from typing import Any

from router.domain.fields import validate
from router.domain.models import (
    EVENT_TYPES,
    MAX_DATA_BYTES,
    MAX_DATA_DEPTH,
    AgentState,
    CallbackPolicy,
    NewInteraction,
    Outcome,
    RejectReason,
)
from router.domain.validation import body_problems, json_nesting_problem
from router.events.sse import event_json, render
from router.store.codec import text
from tests.store.center import Center

POLICY = CallbackPolicy(
    offer_when_ewt_s=120, retry_after_s=300, max_attempts=1, max_schedule_ahead_s=3600
)
Q, T, B = "q" + "x" * 63, "t" * 64, "b" * 64  # the longest queue names
AGENT = "A" + "a" * 127  # the longest id


def deepest() -> Any:
    """`data` nested as deep as allowed, holding the extreme integers and awkward strings."""
    value: Any = {"max": 2**63 - 1, "min": -(2**63), "s": '\n"\\</script>\u2028\x00'}
    for level in range(MAX_DATA_DEPTH - 1):
        value = [value] if level % 2 else {"k": value}
    return value


def largest() -> Any:
    """`data` of exactly MAX_DATA_BYTES as compact UTF-8 JSON, in characters whose JSON escapes
    are longest (12 bytes for 4)."""
    return {"s": "😀" * ((MAX_DATA_BYTES - len('{"s":""}')) // 4)}


def ix_id(name: str) -> str:
    return (name + "-").ljust(128, "z")


async def create(center: Center, name: str, queue: str, data: Any) -> str:
    """Create through the edge's checks, from the JSON text a client would send."""
    raw = json.dumps({"id": ix_id(name), "queue": queue, "data": data}).encode()
    assert json_nesting_problem(raw) is None
    body = json.loads(raw)
    assert body_problems(body) == []
    request = validate(NewInteraction, body)
    await center.engine.create_interaction(request, center.now)
    return ix_id(name)


async def test_every_event_type_renders_from_the_largest_and_deepest_bodies(
    center: Center,
) -> None:
    datas = {"deep": deepest(), "large": largest()}
    assert len(json.dumps(datas["large"], separators=(",", ":"), ensure_ascii=False).encode()) == (
        MAX_DATA_BYTES
    )
    engine = center.engine

    def now() -> float:
        return center.now

    await center.queue(Q, skills={"s": 1}, steps=((30, {"s": 1}),), callback=POLICY, wrap_up_s=0,
                       max_wait_s=60)  # fmt: skip
    await center.queue(T, skills={"s": 1}, wrap_up_s=0)
    await center.queue(B, skills={"b": 1}, max_waiting=1)
    # Nobody serves Q: every arrival is offered a callback (the default EWT is 180 s).
    c1 = await create(center, "c1", Q, datas["deep"])
    await engine.accept_callback(c1, now())
    c2 = await create(center, "c2", Q, datas["large"])
    await engine.accept_callback(c2, now(), at=now() + 600)
    await engine.abandon(c2, now())  # a scheduled callback cancelled
    await engine.abandon(await create(center, "c3", Q, datas["deep"]), now())
    await create(center, "e1", Q, datas["large"])
    await center.advance(31)  # escalates
    await center.advance(30)  # times out
    await create(center, "b1", B, datas["deep"])
    await create(center, "b2", B, datas["large"])  # blocked
    await center.agent(AGENT, {"s": 1})  # offered c1, the callback
    await engine.accept(c1, AGENT, now())
    await engine.complete(c1, AGENT, now(), Outcome.CUSTOMER_NO_ANSWER)  # failed: 1 attempt
    r1 = await create(center, "r1", Q, datas["large"])
    await engine.reject(r1, AGENT, RejectReason.REJECTED, now())
    x1 = await create(center, "x1", T, datas["deep"])
    await engine.accept(x1, AGENT, now())
    await engine.transfer(x1, AGENT, Q, now())
    await engine.accept(x1, AGENT, now())
    await engine.complete(x1, AGENT, now())
    await center.state(AGENT, AgentState.NOT_READY, reason="r" * 64)

    seen: set[str] = set()
    for entry_id, fields in await engine.read_log(count=10_000):
        rendered = render(text(entry_id), fields)
        assert rendered is not None, fields[b"t"]
        event, frame = rendered
        lines = frame.decode().split("\n")
        assert lines[:2] == [f"id: {event.id}", f"event: {event.type}"]
        assert lines[3:] == ["", ""]  # one data line: no raw line break inside
        body = json.loads(lines[2].removeprefix("data: "))
        assert json.loads(event_json(event)) == body  # the webhook body
        if event.type == "interaction.offered":
            name = body["interaction_id"].split("-")[0]
            assert body["data"] == datas["deep" if name in ("c1", "x1") else "large"]
        seen.add(event.type)
    assert seen == set(EVENT_TYPES)
