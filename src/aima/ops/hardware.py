"""Hardware operations: what the daemon's machine has (CPU, memory, cgroup limits, disks, GPUs)."""

from __future__ import annotations

import asyncio

from pydantic import Field

from aima import hardware
from aima.hardware.facts import HardwareFacts
from aima.ops.context import Context
from aima.ops.models import Input
from aima.ops.registry import Cli, operation


class DetectInput(Input):
    refresh: bool = Field(False, description="probe again instead of answering from the few-seconds cache")


@operation("hardware.detect", mutating=False, method="GET", path="/hardware", cli=Cli(None, "hardware"))
async def detect(ctx: Context, inp: DetectInput) -> HardwareFacts:
    """The detected hardware: platform, CPU (model, cores, ISA flags), memory, cgroup limits, the effective
    budget (the smaller of host and cgroup), free disk space of AIMA_HOME, and each GPU with its memory.

    Unknown facts are null, never 0; unified-memory GPUs (Apple Silicon, GB10, Jetson) have null GPU memory
    and use host memory. ``notes`` says which vendor tools were missing or failed.
    """
    return await asyncio.to_thread(hardware.detect, ctx.settings.home, refresh=inp.refresh)
