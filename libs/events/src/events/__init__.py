"""breakglass's contract: commands, events, subjects, the codec and verbs.

Plain data over msgspec and the standard library: a reader of the stream
needs nothing else. The runtime over NATS (connection, topology, event log,
locks, consumer) is `eventbus`, built on this package; this one never
imports it (an import-linter contract in tests/contract checks).
Services import both and never each other.
"""

from .codec import ContractError, decode, decode_command, decode_event, encode
from .kinds import SCHEMA_VERSION
from .verbs import MUTATING, Verb

__all__ = [
    "ContractError",
    "MUTATING",
    "SCHEMA_VERSION",
    "Verb",
    "decode",
    "decode_command",
    "decode_event",
    "encode",
]
