"""What agent-runner does with each command it accepts."""

from __future__ import annotations

import logging
from dataclasses import dataclass

from nats.js import JetStreamContext

from events.commands import Command, StartTurn
from events.topology import Topology

from .settings import Settings


@dataclass
class Handlers:
    settings: Settings
    js: JetStreamContext
    topology: Topology
    log: logging.Logger

    async def handle(self, command: Command) -> None:
        match command:
            case StartTurn():
                self.log.info("turn %s for session %s received", command.turn_id, command.session_id)
