"""A small contact center for scenario tests: the tests play the platform and the agents."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from router.clock import ManualClock
from router.domain.models import (
    Agent,
    AgentProfile,
    AgentState,
    Channel,
    Event,
    Interaction,
    NewInteraction,
    QueueConfig,
    Step,
)
from router.store.engine import Engine
from router.store.invariants import check_invariants


@dataclass
class Center:
    engine: Engine
    clock: ManualClock

    @property
    def now(self) -> float:
        return self.clock.now()

    async def queue(self, name: str, **fields: Any) -> QueueConfig:
        steps = tuple(
            Step(after_s=after, skills=skills) for after, skills in fields.pop("steps", ())
        )
        config = QueueConfig(name=name, steps=steps, **fields)
        await self.engine.upsert_queue(config, self.now)
        return config

    async def agent(
        self,
        agent_id: str,
        skills: dict[str, int],
        channels: dict[Channel, int] | None = None,
        available: bool = True,
    ) -> Agent:
        profile = AgentProfile(skills=skills, channels=channels or {Channel.VOICE: 1})
        agent, _ = await self.engine.put_agent(agent_id, profile, self.now)
        if available:
            agent = await self.engine.set_agent_state(agent_id, AgentState.AVAILABLE, self.now)
        return agent

    async def state(self, agent_id: str, state: AgentState, **kw: Any) -> Agent:
        return await self.engine.set_agent_state(agent_id, state, self.now, **kw)

    async def call(self, queue: str, ix_id: str, **fields: Any) -> Interaction:
        interaction, _ = await self.engine.create_interaction(
            NewInteraction(queue=queue, id=ix_id, **fields), self.now
        )
        return interaction

    async def ix(self, ix_id: str) -> Interaction:
        found = await self.engine.get_interaction(ix_id, self.now)
        assert found is not None
        return found

    async def ag(self, agent_id: str) -> Agent:
        found = await self.engine.get_agent(agent_id)
        assert found is not None
        return found

    async def advance(self, seconds: float) -> None:
        """Move the clock on and apply due timers, as the service's tick loop would."""
        self.clock.advance(seconds)
        while (await self.engine.tick(self.now)).applied:
            pass

    async def events(self, *types: str) -> list[Event]:
        found = await self.engine.read_events()
        return [e for e in found if not types or e.type in types]

    async def offered_to(self, ix_id: str) -> str | None:
        interaction = await self.ix(ix_id)
        return interaction.agent_id if interaction.status == "offered" else None

    async def check(self) -> None:
        """Every invariant holds (SPEC §3.4, §3.5, §3.6)."""
        violations = await check_invariants(
            self.engine.redis,
            self.engine.keys,
            self.now,
            set(self.engine.settings.exclusive_channels),
        )
        assert violations == [], violations
