from router.domain.models import InteractionStatus
from tests.store.center import Center


async def test_a_call_is_offered_accepted_and_completed(center: Center) -> None:
    await center.queue("support", skills={"support": 2}, wrap_up_s=5)
    await center.agent("a1", {"support": 3})
    ix = await center.call("support", "c1")
    assert ix.status == InteractionStatus.OFFERED
    assert ix.agent_id == "a1"
    await center.check()
    await center.engine.accept("c1", "a1", center.now)
    done = await center.engine.complete("c1", "a1", center.now)
    assert done.status == InteractionStatus.COMPLETED
