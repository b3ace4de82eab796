"""breakglass's runtime over NATS JetStream: the connection, the stream and
KV topology, the access matrix, the event log, turn locks and the command
consumer. Built on the contract in `events`, which imports none of this.

Services import this package and `events`, and never each other.
"""

from . import natsheaders  # noqa: F401  (installs the faster header parser, see there)
