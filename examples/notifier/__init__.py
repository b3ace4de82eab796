"""breakglass notifier: an example internal subscriber of recovery events.

It follows the events stream without a consumer (eventbus.follow: direct
gets, then the stream's republished events; the read-only user may keep no
server state) and POSTs
a notification (JSON, or ntfy's publish-by-headers format) for the few
events an operator wants on their phone. It is a separate process reading
the stream, so it can never slow down or block a turn.

Modules, in the order worth reading:

- `rules`    which events deserve a notification, and what it says (pure)
- `deliver`  how a notification becomes an HTTP request, and what a reply means
- `settings` the `BREAKGLASS_NOTIFY_*` variables
- `position` its place in the stream and its pending retries (a state file)
- `main`     the follow loop that ties them together
"""

__version__ = "0.1.0"
