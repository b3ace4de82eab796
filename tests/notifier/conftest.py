from __future__ import annotations

from collections.abc import Iterator

import pytest

from tests.notifier.rig import Receiver


@pytest.fixture
def receiver() -> Iterator[Receiver]:
    r = Receiver().start()
    try:
        yield r
    finally:
        r.stop()


@pytest.fixture(autouse=True)
def _own_directory(tmp_path, monkeypatch):  # type: ignore[no-untyped-def]
    """The notifier's state file (relative by default) lands in the test's own directory."""
    monkeypatch.chdir(tmp_path)
