"""Web Push from the gateway (RFC 8030 delivery, RFC 8291 encryption,
RFC 8292 VAPID), so an operator hears about a session with the page closed.

Where it runs: in every gateway, off the firehose it already has (one
ordered consumer of every session's events, gateway.hub). Each gateway sees
each event; before it pushes one, it creates `pushsent.<digest of the event>`
in the KV bucket (compare-and-set), and only the gateway whose create
succeeded sends. So with two gateways an event is pushed once; a gateway
that dies between its claim and its send loses that push (at most once:
a push is a nudge, the page and the notifier hold the record).

- `vapid`: the application server's key (generated once, 0600 in the data
  directory) and the signed JWT each request carries.
- `ece`: the aes128gcm encryption of a payload to one subscription.
- `store`: subscriptions per identity in the KV bucket, with an expiry.
- `messages`: which events push, and the few words they carry (never the
  transcript: title, session, verb, an id; the page fetches the rest).
- `grants`: the single-use grant an approval's push carries, so Approve or
  Deny on the notification decides that request only, once, in time.
- `sender`: the loop that claims, encrypts, sends and drops dead endpoints.
"""
