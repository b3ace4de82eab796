"""A search over many sessions looks at a bounded number per call and says
so ("searched N of M"), with a cursor that goes on exactly where it
stopped: over all calls every session is looked at once, newest first."""

from __future__ import annotations

from events.codec import encode
from events.commands import SessionRecord
from eventbus.index import Search, page_sessions
from events.kinds import UserPrompted
from eventbus.log import EventLog
from eventbus.topology import ensure, session_key
from events.types import new_id, utcnow


async def _sessions(js, topology, n: int) -> list[str]:
    kv = await ensure(js, topology)
    log = EventLog(js, topology, writer="gateway")
    ids = []
    for i in range(n):
        sid = new_id()
        await kv.create(session_key(sid), encode(SessionRecord(session_id=sid, created_by="alice", created_at=utcnow())))
        await log.append(UserPrompted(session_id=sid, turn_id=new_id(), by="alice",
                                      text=f"needle {i}" if i % 7 == 0 else f"hay {i}", model="sonnet"))
        ids.append(sid)
    return ids


async def test_a_search_stops_after_its_scan_and_goes_on_from_its_cursor(js, topology):
    ids = await _sessions(js, topology, 45)
    want = [sid for i, sid in enumerate(ids) if i % 7 == 0][::-1]  # newest first
    found, cursor, calls = [], None, 0
    while True:
        page = await page_sessions(js, topology, search=Search(text="needle"), limit=50, before=cursor, scan=10)
        calls += 1
        assert page.stored == 45
        assert 0 < page.searched <= 50
        found += [s.session_id for s in page.sessions]
        cursor = page.next_before
        if cursor is None:
            break
        assert calls < 20
    assert found == want
    assert calls > 1  # it did stop short, and went on


async def test_a_plain_page_is_not_a_search(js, topology):
    await _sessions(js, topology, 3)
    page = await page_sessions(js, topology, limit=2)
    assert (len(page.sessions), page.searched, page.stored) == (2, 2, None)
    assert page.next_before is not None


async def test_a_search_matching_nothing_answers_how_much_it_looked_at(js, topology):
    await _sessions(js, topology, 12)
    page = await page_sessions(js, topology, search=Search(text="no such title"), scan=5)
    assert page.sessions == [] and page.stored == 12
    assert page.searched >= 5 and page.next_before is not None
    rest = await page_sessions(js, topology, search=Search(text="no such title"), before=page.next_before, scan=100)
    assert rest.sessions == [] and rest.next_before is None
    assert page.searched + rest.searched == 12


def test_subject_matching_as_nats_does():
    from eventbus.direct import _matches

    assert _matches("a.b.c", "a.b.c") and _matches("a.b.c", "a.*.c") and _matches("a.b.c", "a.>")
    assert not _matches("a.b", "a.b.c") and not _matches("a.b.c.d", "a.*.c") and not _matches("a", "a.>")
    assert not _matches("a.b.x", "a.b.c") and _matches("$KV.b.sessions.x", "$KV.b.sessions.*")
