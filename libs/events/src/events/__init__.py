"""breakglass's one contract: commands, events, subjects, topology, event log.

Services import this package and never each other.
"""

from . import natsheaders  # noqa: F401  (installs the faster header parser, see there)
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
