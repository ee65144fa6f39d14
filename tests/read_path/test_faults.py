"""The read path under Telegram's bad days: cancelled reads free their senders, FLOOD_WAIT is met
once and gates its method on the whole DC (waited out, or RetryLater at once), expired file
references are refreshed once per file mid-stream, dropped connections and down DCs are survived or
reported promptly."""

from __future__ import annotations

import asyncio
import time

import pytest

from tgdav.errors import RetryLater, UpstreamUnavailable

from .conftest import HOME_DC, MIB, delta, sha
from tests.helpers import wait_until


def _in_flight(engine) -> int:
    return sum(dc["in_flight"] for dc in engine.stats().values())


def _draining(engine) -> int:
    return sum(dc["draining"] for dc in engine.stats().values())



@pytest.fixture(autouse=True)
def answers_overtake_each_other(sandbox, clean_faults):
    """Real Telegram's answers overtake each other on one connection: these tests run with the
    sandbox's jitter on (a test that sets its own link replaces it)."""
    sandbox.controls.apply_link({"profile": "jittery"})
    yield

# --- 5. cancellation ---------------------------------------------------------------------------
@pytest.mark.timeout(60)
def test_closing_a_stream_frees_its_senders(engine, sandbox):
    sandbox.controls.apply_link({"latency_ms": 200, "bandwidth": 256 * 1024})
    size = engine.entries["big.bin"].size
    seen = {}

    async def read_until_read_ahead_then_close():
        stream = engine.reader.stream(engine.loc("big.bin"), 0, size - 1)
        got = b""
        for _ in range(4):          # read-ahead starts once the client has taken the first part
            got += await stream.__anext__()
            seen["busy"] = engine.pool.stats()["4"]["in_flight"]
            if seen["busy"]:
                break
        await stream.aclose()
        return got

    before = sandbox.snapshot()
    piece = engine.call(read_until_read_ahead_then_close())
    assert piece == sandbox.expected("big.bin", 0, len(piece) - 1)
    assert seen["busy"] > 0
    t = time.monotonic()
    wait_until(lambda: _in_flight(engine) == 0, 10, lambda: engine.stats())
    print(f"\nin_flight {seen['busy']} -> 0 in {time.monotonic() - t:.3f} s after aclose")
    stats = engine.stats()["4"]
    assert stats["senders"] >= 1 and stats["gated"] == 0      # kept for the next read, not dropped
    # every cancelled request that had reached Telegram was dropped there (rpc_drop_answer)
    assert stats["dropped_answers"] > 0
    wait_until(lambda: delta(before, sandbox.snapshot(), "drop_requests", 4) == stats["dropped_answers"],
               10, lambda: (sandbox.snapshot()["4"], stats))
    assert wait_until(lambda: engine.stats()["4"]["draining"] == 0, timeout=10)


@pytest.mark.timeout(60)
def test_closing_a_sync_stream_frees_its_senders(engine, sandbox):
    sandbox.controls.apply_link({"latency_ms": 200, "bandwidth": 256 * 1024})
    stream = engine.sync_reader.open(engine.loc("big.bin"), 1000, 15 * MIB)
    at = 1000
    while at < 1000 + 2 * MIB:          # read on until read-ahead is out there (the first window may
        piece = stream.read(8192)       # be one part, arrived whole by the time a loaded machine looks)
        assert piece == sandbox.expected("big.bin", at, at + len(piece) - 1)
        at += len(piece)
        if _in_flight(engine) > 0:
            break
    assert _in_flight(engine) > 0, engine.stats()
    stream.close()
    t = time.monotonic()
    wait_until(lambda: _in_flight(engine) == 0, 10, lambda: engine.stats())
    print(f"\nin_flight -> 0 in {time.monotonic() - t:.3f} s after close")


@pytest.mark.timeout(60)
def test_seek_cancels_useless_read_ahead(engine, sandbox):
    """A reader that takes one byte and closes does not go on downloading: the read-ahead starts at
    one small part and grows only while the client keeps reading (the seek issue's goal: <= 512 KiB
    fetched for an 8 KiB read of an open-ended range)."""
    sandbox.controls.apply_link({"latency_ms": 100, "bandwidth": 4 * 1048576})
    before = sandbox.snapshot()
    stream = engine.sync_reader.open(engine.loc("big.bin"), 0, engine.entries["big.bin"].size - 1)
    stream.read(8192)
    stream.close()
    # nothing in flight nor draining: every request sent reached the sandbox and was counted there
    wait_until(lambda: _in_flight(engine) == 0 and _draining(engine) == 0, 10, lambda: engine.stats())
    after = sandbox.snapshot()
    fetched = delta(before, after, "getfile_bytes")
    assert fetched <= 512 * 1024, fetched
    assert delta(before, after, "requests:GetFile") <= 2
    print(f"\nbytes fetched for an 8 KiB read then close: {fetched}")


# --- 6. flood gates -----------------------------------------------------------------------------
def _small_reads_until_flooded(engine, name: str, tries: int = 10) -> RetryLater:
    """One-part reads of `name` (64 KiB apart: each a single getFile, nothing else in flight) until
    one answers RetryLater."""
    for k in range(tries):
        try:
            engine.read(name, k * 65536, k * 65536 + 100)
        except RetryLater as e:
            return e
    raise AssertionError(f"no FLOOD_WAIT after {tries} reads")


@pytest.mark.timeout(60)
def test_a_flood_wait_is_met_by_one_request_and_none_follow_it(engine, sandbox):
    """Promise 7: Telegram's getFile limit is the account's on a DC (the sandbox's rate rule holds the
    account flooded for its seconds, as Telegram does). The request that meets FLOOD_WAIT_30 is the
    only one: no other sender of the pool, and no sender opened for the purpose, sends getFile to that
    DC until the deadline; the read is told to come back at once (RetryLater -> 503 Retry-After)."""
    sandbox.faults({"getfile_rate_limit": {"per_second": 1, "seconds": 30}})
    before = sandbox.snapshot()
    e = _small_reads_until_flooded(engine, "d4.bin")
    assert 10 < e.seconds <= 30
    after = sandbox.snapshot()
    assert delta(before, after, "errors:FLOOD_WAIT_X", dc=4) == 1, after["4"]
    assert engine.opens[4] == 1                     # no connection opened to get around it
    # more readers of that DC, at once and in parallel: refused without asking Telegram
    sandbox.reset()                                 # (the sandbox would answer them now: we must not ask)

    async def four_readers():
        async def one(k):
            try:
                await engine.aread("big.bin", k * 3 * MIB, k * 3 * MIB + MIB)
            except RetryLater as e:
                return e
        return await asyncio.gather(*(one(k) for k in range(4)))

    refused = engine.call(four_readers())
    assert all(isinstance(r, RetryLater) and r.seconds > 10 for r in refused), refused
    assert delta(after, sandbox.snapshot(), "requests:GetFile", dc=4) == 0
    assert engine.opens[4] == 1
    # another DC is not held back
    assert engine.read("mid.bin", 0, MIB) == sandbox.expected("mid.bin", 0, MIB)


@pytest.mark.timeout(60)
@pytest.mark.parametrize("premium", [False, True])
def test_a_flood_on_a_warm_pool_holds_every_sender_of_the_dc(engine, sandbox, premium):
    """A FLOOD_WAIT met on one of several open senders gates getFile on all of them."""
    assert engine.read("big.bin", 0, 8 * MIB) == sandbox.expected("big.bin", 0, 8 * MIB)  # senders open
    senders = engine.stats()["4"]["senders"]
    assert senders > 1
    sandbox.faults({"flood_wait": [{"dc": 4, "method": "GetFile", "seconds": 40, "count": 1,
                                    "premium": premium}]})
    before = sandbox.snapshot()
    with pytest.raises(RetryLater) as e:
        engine.read("d4.bin", 0, 100)
    assert e.value.seconds > 10           # what Telegram asked for, not the pool's max_wait
    assert delta(before, sandbox.snapshot(), "requests:GetFile", dc=4) == 1   # no hammering
    stats = engine.stats()["4"]
    assert stats["gated"] == stats["senders"] == senders
    with pytest.raises(RetryLater):
        engine.read("big.bin", 12 * MIB, 12 * MIB + 10)
    assert delta(before, sandbox.snapshot(), "requests:GetFile", dc=4) == 1
    assert engine.read("mid.bin", 0, MIB) == sandbox.expected("mid.bin", 0, MIB)   # DC 3 is not gated


@pytest.mark.timeout(60)
def test_rate_limit_flood_raises_retry_later(engine, sandbox):
    sandbox.faults({"getfile_rate_limit": {"per_second": 1, "seconds": 60}})
    t = time.monotonic()
    with pytest.raises(RetryLater) as e:
        engine.read("mid.bin")            # DC 3
    assert e.value.seconds > 0
    print(f"\nrate-limit RetryLater({e.value.seconds}) after {time.monotonic() - t:.2f} s")


@pytest.mark.timeout(60)
def test_short_flood_on_every_sender_is_waited_out(engine, sandbox):
    count = 6                        # more than the DC's 4 senders: every one of them is gated
    sandbox.faults({"flood_wait": [{"dc": 4, "method": "GetFile", "seconds": 1, "count": count}]})
    before = sandbox.snapshot()
    t = time.monotonic()
    got = engine.read("d4.bin", 0, 3 * MIB)
    took = time.monotonic() - t
    assert got == sandbox.expected("d4.bin", 0, 3 * MIB)
    assert delta(before, sandbox.snapshot(), "errors:FLOOD_WAIT_X", dc=4) == count
    print(f"\nwaited out {count} x FLOOD_WAIT_1 in {took:.2f} s")


@pytest.mark.timeout(60)
def test_short_premium_flood_is_waited_out(engine, sandbox):
    sandbox.faults({"flood_wait": [{"dc": 4, "method": "GetFile", "seconds": 1, "count": 1,
                                    "premium": True}]})
    got = engine.read("d4.bin", 0, 2 * MIB)
    assert got == sandbox.expected("d4.bin", 0, 2 * MIB)


# --- 7. file references ---------------------------------------------------------------------------
@pytest.mark.timeout(60)
def test_file_reference_expired_mid_stream(engine, sandbox):
    size = engine.entries["big.bin"].size
    before = sandbox.snapshot()

    async def read_with_expiry():
        out = bytearray()
        expired = False
        async for piece in engine.reader.stream(engine.loc("big.bin"), 0, size - 1):
            out += piece
            if not expired and len(out) >= 3 * MIB:
                sandbox.faults({"expire_file_references": True})
                expired = True
        return bytes(out)

    got = engine.call(read_with_expiry())
    after = sandbox.snapshot()
    assert len(got) == size
    assert sha(got) == sha(sandbox.content("big.bin"))
    assert delta(before, after, "errors:FILE_REFERENCE_EXPIRED") >= 1, after
    assert delta(before, after, "requests:GetMessages") == 1, after      # one refresh per file
    print(f"\nFILE_REFERENCE_EXPIRED x{delta(before, after, 'errors:FILE_REFERENCE_EXPIRED')}, "
          f"GetMessages x{delta(before, after, 'requests:GetMessages')}")


@pytest.mark.timeout(60)
def test_file_reference_expired_with_several_readers(engine, sandbox):
    """Two streams of one file and one of another, all with parts in flight when references
    expire: one refresh per file."""
    assert engine.read("big.bin", 0, 100) == sandbox.expected("big.bin", 0, 100)
    assert engine.read("d4.bin", 0, 100) == sandbox.expected("d4.bin", 0, 100)
    sandbox.faults({"expire_file_references": True})
    before = sandbox.snapshot()
    ranges = [("big.bin", MIB, 5 * MIB), ("big.bin", 9 * MIB, 12 * MIB), ("d4.bin", 1000, 3 * MIB)]

    async def together():
        return await asyncio.gather(*(engine.aread(n, a, b) for n, a, b in ranges))

    for (n, a, b), got in zip(ranges, engine.call(together())):
        assert got == sandbox.expected(n, a, b), (n, a, b)
    after = sandbox.snapshot()
    assert delta(before, after, "errors:FILE_REFERENCE_EXPIRED") >= 2
    assert delta(before, after, "requests:GetMessages") == 2, after


@pytest.mark.timeout(60)
def test_short_lived_file_references_are_refreshed_again_and_again(engine, sandbox):
    """References live 1 s and the read takes several: each expiry costs one refresh, bytes exact."""
    sandbox.controls.apply_link({"latency_ms": 50, "bandwidth": 1024 * 1024})
    # the listing's references expired, new ones live 1 s
    sandbox.faults({"file_reference_ttl": 1, "expire_file_references": True})
    before = sandbox.snapshot()
    t = time.monotonic()
    got = engine.read("d4.bin")
    took = time.monotonic() - t
    after = sandbox.snapshot()
    assert sha(got) == sha(sandbox.content("d4.bin"))
    refreshes = delta(before, after, "requests:GetMessages")
    assert refreshes >= 1, after
    assert refreshes <= delta(before, after, "errors:FILE_REFERENCE_EXPIRED")
    print(f"\n{took:.2f} s read with 1 s references: {refreshes} refreshes, "
          f"{delta(before, after, 'errors:FILE_REFERENCE_EXPIRED')} FILE_REFERENCE_EXPIRED")


@pytest.mark.timeout(60)
def test_expired_reference_on_a_stale_dc_file(engine, sandbox):
    """Unknown DC and an expired reference at once: one migration, one refresh."""
    sandbox.faults({"expire_file_references": True})
    before = sandbox.snapshot()
    assert engine.read("stale2.bin") == sandbox.content("stale2.bin")
    after = sandbox.snapshot()
    assert delta(before, after, "errors:FILE_MIGRATE_X") == 1, after
    assert delta(before, after, "requests:GetMessages") == 1, after


# --- 9. dropped connections ----------------------------------------------------------------------
@pytest.mark.timeout(60)
@pytest.mark.parametrize("dc,name", [(4, "big.bin"), (HOME_DC, "home.bin")])
def test_dropped_connection_mid_read(engine, sandbox, dc, name):
    sandbox.faults({"drop_after_bytes": {str(dc): {"bytes": 300_000, "count": 2}}})
    before = sandbox.snapshot()
    end = min(engine.entries[name].size - 1, 6 * MIB)
    got = engine.read(name, 0, end)
    after = sandbox.snapshot()
    assert sha(got) == sha(sandbox.expected(name, 0, end))
    assert delta(before, after, "dropped", dc=dc) >= 1, after
    print(f"\nDC {dc}: {delta(before, after, 'dropped', dc=dc)} connections dropped mid-read")


@pytest.mark.timeout(60)
def test_dropped_connection_of_warm_sender(engine, sandbox):
    """Connections dropped after they were opened: drop faults only hit new connections, so
    take every DC 4 connection down by bringing the DC down and up again quickly."""
    assert engine.read("d4.bin", 0, MIB) == sandbox.expected("d4.bin", 0, MIB)
    sandbox.faults({"down": [4]})       # in force on return: DC 4's connections are cut
    sandbox.faults({"down": []})
    got = engine.read("d4.bin", MIB, 5 * MIB)
    assert got == sandbox.expected("d4.bin", MIB, 5 * MIB)


@pytest.mark.timeout(60)
def test_a_read_after_a_dc_cut_every_connection_asks_for_the_same_parts_as_before(engine, sandbox):
    """Every DC 4 connection is cut at once while idle. The next read meets the dead senders one by
    one; none of them had its request (Telegram never saw it), so none is an attempt: the read is
    sent on a new connection with the parts it would have had (before, it failed twice with
    ConnectionsLost, and the fetcher halved the part twice, down to 16 KiB parts on that DC)."""
    sandbox.controls.apply_link({})                  # answers in order: the two reads alike
    assert engine.read("d4.bin", 0, 4 * MIB) == sandbox.expected("d4.bin", 0, 4 * MIB)   # 5 senders
    wait_until(lambda: _in_flight(engine) == 0 and _draining(engine) == 0, 10, lambda: engine.stats())
    assert engine.stats()["4"]["senders"] >= 2

    def read(start: int) -> tuple[int, int]:
        before = sandbox.snapshot()
        assert engine.read("d4.bin", start, start + 999) == sandbox.expected("d4.bin", start, start + 999)
        after = sandbox.snapshot()
        return (delta(before, after, "requests:GetFile", 4), delta(before, after, "getfile_bytes", 4))

    control = read(4 * MIB + MIB // 2)               # the same read, senders alive
    sandbox.faults({"down": [4]})                    # in force on return: every connection is cut
    sandbox.faults({"down": []})
    assert read(5 * MIB + MIB // 2) == control


# --- 10. a DC that is down ------------------------------------------------------------------------
PROMPT = 20.0   # seconds: a bound against hanging (Telethon gives up reconnecting after ~4 s; the
                # pool's request_timeout is 30 s), not a performance assertion


def _fails_promptly(engine, name, start, end):
    t = time.monotonic()
    try:
        engine.read(name, start, end, timeout=PROMPT)
    except (UpstreamUnavailable, RetryLater) as e:
        return e, time.monotonic() - t
    except TimeoutError:
        pytest.fail(f"reading from a down DC hung: no answer within {PROMPT:.0f} s")
    pytest.fail("reading from a down DC succeeded")


@pytest.mark.timeout(60)
def test_down_dc_fails_promptly(engine, sandbox):
    sandbox.faults({"down": [3]})
    error, took = _fails_promptly(engine, "mid.bin", 0, MIB)
    print(f"\ndown DC (never connected): {type(error).__name__} in {took:.2f} s")


@pytest.mark.timeout(60)
def test_dc_going_down_under_warm_senders_fails_promptly(engine, sandbox):
    assert engine.read("mid.bin", 0, MIB) == sandbox.expected("mid.bin", 0, MIB)
    sandbox.faults({"down": [3]})
    error, took = _fails_promptly(engine, "mid.bin", MIB, 3 * MIB)
    print(f"\ndown DC (warm senders): {type(error).__name__} in {took:.2f} s")
    # and when it comes back, reading works again
    sandbox.faults({"down": []})
    assert engine.read("mid.bin", MIB, 3 * MIB) == sandbox.expected("mid.bin", MIB, 3 * MIB)
    assert _in_flight(engine) == 0


@pytest.mark.timeout(60)
def test_down_dc_is_tried_once_for_all_parts_waiting_on_it(engine, sandbox):
    """Four readers of one file on a down DC: the first connection attempt's failure is every
    waiting part's answer. Retrying it part after part makes the HTTP clients wait N times the
    connect timeout (seconds here, ~10 s each against a real unreachable Telegram)."""
    sandbox.faults({"down": [3]})
    ranges = [(0, MIB), (MIB, 2 * MIB), (2 * MIB, 3 * MIB), (100, 200)]

    async def together():
        return await asyncio.gather(*(engine.aread("mid.bin", a, b) for a, b in ranges),
                                    return_exceptions=True)

    t = time.monotonic()
    try:
        results = engine.call(together(), timeout=60)
    except TimeoutError:
        pytest.fail(f"reads from a down DC hung; {engine.opens[3]} connection attempts so far")
    took = time.monotonic() - t
    print(f"\n4 readers of a down DC: {engine.opens[3]} connection attempts, {took:.2f} s")
    for r in results:
        assert isinstance(r, (UpstreamUnavailable, RetryLater)), r
    assert engine.opens[3] == 1, f"{engine.opens[3]} connection attempts to the down DC"


@pytest.mark.timeout(60)
def test_unreachable_dc_costs_no_export(engine, sandbox):
    """auth.exportAuthorization is what earns long FLOOD_WAITs: a DC that cannot be reached must be
    found out before exporting, or every retry of a client (Kodi, rclone) exports again."""
    sandbox.faults({"down": [4]})
    before = sandbox.snapshot()
    for _ in range(3):                      # a client retrying its request
        with pytest.raises((UpstreamUnavailable, RetryLater)):
            engine.read("d4.bin", 0, 100, timeout=PROMPT)
    after = sandbox.snapshot()
    assert delta(before, after, "exports", dc=HOME_DC) == 0, after


@pytest.mark.timeout(60)
def test_down_dc_through_sync_reader(engine, sandbox):
    sandbox.faults({"down": [4]})
    stream = engine.sync_reader.open(engine.loc("d4.bin"), 0, MIB)
    try:
        with pytest.raises((UpstreamUnavailable, RetryLater)):
            stream.read(8192)
    finally:
        stream.close()


@pytest.mark.timeout(60)
def test_a_flooded_upload_method_does_not_stop_downloads_on_the_same_senders(engine, sandbox):
    """Telegram floods per method: senders gated for saveFilePart still carry getFile."""
    from telethon.tl.functions.upload import SaveFilePartRequest
    assert engine.read("home.bin", 0, MIB) == sandbox.expected("home.bin", 0, MIB)   # DC 2 senders open
    sandbox.faults({"flood_wait": [{"dc": HOME_DC, "method": "SaveFilePart", "seconds": 60, "count": 1000}]})
    with pytest.raises(RetryLater):
        engine.call(engine.pool.invoke(HOME_DC, SaveFilePartRequest(file_id=7, file_part=0, bytes=b"x" * 1024)))
    stats = engine.stats()[str(HOME_DC)]
    assert stats["gated"] == stats["senders"] > 0              # every sender is gated for uploads
    engine.store.clear_chunks()
    before = sandbox.snapshot()
    assert engine.read("home.bin", 0, 2 * MIB) == sandbox.expected("home.bin", 0, 2 * MIB)
    assert delta(before, sandbox.snapshot(), "requests:GetFile", dc=HOME_DC) > 0
