"""breakglass notifier: an example internal subscriber of recovery events.

It reads the events stream through its own durable pull consumer and POSTs
a notification (JSON, or ntfy's publish-by-headers format) for the few
events an operator wants on their phone. It is a separate process reading
the stream, so it can never slow down or block a turn.

Modules, in the order worth reading:

- `rules`    which events deserve a notification, and what it says (pure)
- `deliver`  how a notification becomes an HTTP request, and what a reply means
- `settings` the `BREAKGLASS_NOTIFY_*` variables
- `main`     the durable consumer loop that ties them together
"""

__version__ = "0.1.0"
