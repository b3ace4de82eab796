"""The primer (agent_runner.primer): a canned model answer on loopback,
only for an armed CLI; anything else is refused with an API error."""

from __future__ import annotations

import httpx

from agent_runner.primer import REPLY, Primer


async def test_an_armed_cli_gets_a_text_answer_and_once_disarmed_an_error():
    primer = Primer()
    await primer.start()
    try:
        token = primer.arm()
        async with httpx.AsyncClient(base_url=primer.url(token)) as http:
            got = await http.post("/v1/messages?beta=true", json={"model": "claude-x", "stream": True, "messages": []})
            assert got.status_code == 200 and got.headers["content-type"] == "text/event-stream"
            assert '"model": "claude-x"' in got.text and f'"text": "{REPLY}"' in got.text
            assert got.text.rstrip().endswith('data: {"type": "message_stop"}')
            assert (await http.post("/v1/messages/count_tokens", json={})).status_code == 404
            primer.disarm(token)
            refused = await http.post("/v1/messages", json={"model": "claude-x"})
            assert refused.status_code == 403 and refused.json()["type"] == "error"
        async with httpx.AsyncClient(base_url=primer.url("not-a-token")) as http:
            assert (await http.post("/v1/messages", json={})).status_code == 403
    finally:
        await primer.close()
