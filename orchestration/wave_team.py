"""`WaveTeam`: the AutoGen team that coordinates one wave.

Each lane is an autogen-core agent on a runtime of the wave's own; the coordinator sends every
lane one direct message and awaits its reply. Direct messages are delivered to one recipient
(no group-chat broadcast), and each worker's model context stays its own, so coordinating a
wave costs O(workers), not O(workers²). Lanes run concurrently; a lane runs its workers in order.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field

from autogen_core import AgentId, MessageContext, RoutedAgent, SingleThreadedAgentRuntime, message_handler

from orchestration.planner import Wave


@dataclass
class RunLane:
    wave: int
    lane: int
    workers: list[str]


@dataclass
class LaneDone:
    lane: int
    statuses: dict[str, str] = field(default_factory=dict)


LaneRunner = Callable[[RunLane], Awaitable[LaneDone]]


class LaneAgent(RoutedAgent):
    """Runs the workers of one lane, one after another."""

    def __init__(self, run_lane: LaneRunner) -> None:
        super().__init__("runs one lane of a wave, its workers in order")
        self._run_lane = run_lane

    @message_handler
    async def on_run_lane(self, message: RunLane, ctx: MessageContext) -> LaneDone:
        return await self._run_lane(message)


class WaveTeam:
    """One runtime per wave: a LaneAgent per lane, coordinated by direct messages."""

    def __init__(self, run_lane: LaneRunner) -> None:
        self._run_lane = run_lane

    async def run(self, wave: Wave) -> list[LaneDone]:
        runtime = SingleThreadedAgentRuntime()
        await LaneAgent.register(runtime, "lane", lambda: LaneAgent(self._run_lane))
        runtime.start()
        try:
            replies = await asyncio.gather(
                *(
                    runtime.send_message(
                        RunLane(wave=wave.priority, lane=index, workers=list(lane.workers)),
                        AgentId("lane", f"{wave.priority}-{index}"),
                    )
                    for index, lane in enumerate(wave.lanes)
                )
            )
        finally:
            await runtime.stop()
        return list(replies)
