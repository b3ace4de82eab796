"""`python -m examples.notifier` from the repository root (or, installed,
`python -m breakglass_notifier` / the `breakglass-notifier` script)."""

from .main import cli

cli()
