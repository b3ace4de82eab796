"""breakglass benchmarks (not tests): `python -m bench` (see BENCHMARKS.md)."""
