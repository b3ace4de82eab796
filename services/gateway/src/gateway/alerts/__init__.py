"""The alert receiver: Alertmanager's webhook in, an automatic read-only
triage out (payload -> VM mapping -> alert groups and windows -> triage)."""
