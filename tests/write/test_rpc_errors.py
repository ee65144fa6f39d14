"""Telegram's errors at a write reach the client as telegram/rpc.py's table says, whichever way they
come: here one that Telethon's own sender retries until it gives up.

F21: the home DC goes down after Telegram posted a PUT's message but before its answer arrived. The
client reconnects and sends messages.sendMedia again with the same random_id; Telegram answers
RANDOM_ID_DUPLICATE (500) every time, Telethon retries its 500s and gives up. That was a bare
ValueError and a 500 with a traceback; it is an outage like any other: 503 with Retry-After."""

from __future__ import annotations

import threading
import time

from tests.write.conftest import WRITABLE, http as request, random_bytes, sha256
from tests.helpers import wait_until

HELD = 1000           # ms the home DC holds every answer back: the window in which the answer is lost
DOWN = 1.0            # seconds the DC stays down (it notices in 0.1 s; Telethon reconnects within 5 s)


def _put_losing_the_answer(sandbox, url: str, data: bytes, home: int) -> tuple[int, dict, bytes]:
    """PUT `data` while the home DC is slow; the moment Telegram posted the message, take the DC
    down (the answer on its way is lost with the connection), then bring it back."""
    posted = sandbox.total("messages_sent")
    answer: dict = {}
    sandbox.post("/link", {"latency_ms": HELD, "dc": home})
    try:
        put = threading.Thread(target=lambda: answer.update(r=request("PUT", url, data)))
        put.start()
        wait_until(lambda: sandbox.total("messages_sent") > posted or "r" in answer, timeout=120)
        sandbox.post("/faults", {"down": [home]})
        time.sleep(DOWN)
    finally:
        sandbox.post("/faults", {"down": []})
        sandbox.post("/link", {"profile": "off"})
    put.join(300)
    return answer["r"]


def test_a_put_whose_send_telethon_gives_up_on_is_503_with_retry_after(sandbox):
    url, _, _ = sandbox.server("f21")
    home = int(sandbox.info.get("home_dc", 2))
    folder = f"{url}{WRITABLE}/f21/"
    assert request("MKCOL", folder)[0] == 201
    data = random_bytes(300_000, 21)
    resent = 0
    for attempt in range(3):      # the loss needs the DC down within HELD ms: try again if it missed
        before = sandbox.total("errors:RANDOM_ID_DUPLICATE")
        status, headers, body = _put_losing_the_answer(sandbox, folder + f"lost-answer-{attempt}.bin", data, home)
        if sandbox.total("errors:RANDOM_ID_DUPLICATE") == before:
            assert status == 201, (status, body)       # the answer arrived: nothing was resent
            continue
        resent += 1
        assert status == 503, (status, body)
        assert int(headers["Retry-After"]) > 0 and b"RANDOM_ID_DUPLICATE" in body, (headers, body)
        # the message was posted (Telegram did it; only its answer was lost): the file is whole or absent
        got, _, content = request("GET", folder + f"lost-answer-{attempt}.bin")
        assert got == 404 or (got == 200 and sha256(content) == sha256(data)), got
        break
    assert resent, "the DC never went down between sendMedia and its answer"
