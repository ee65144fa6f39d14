"""What is learned about DCs outlives a request and a restart: a file with a stale dc_id costs one
FILE_MIGRATE in its lifetime (even with read-ahead and concurrent readers), none after a restart on
the same state dir; a foreign DC's authorisation is exported once and reused after a restart."""

from __future__ import annotations

import asyncio

import pytest

from tgdav.errors import RetryLater
from tgdav.sandbox.keys import key_id_of

from .conftest import HOME_DC, MIB, STALE_TRUE_DC, delta
from tests.helpers import wait_until


def test_stale_dc_costs_one_migrate_with_read_ahead(engine, sandbox):
    assert engine.loc("stale.bin").dc_id != STALE_TRUE_DC      # the message advertises the old DC
    before = sandbox.snapshot()
    size = engine.entries["stale.bin"].size
    assert engine.read("stale.bin") == sandbox.content("stale.bin")    # 8 parts in flight at once
    after = sandbox.snapshot()
    assert delta(before, after, "errors:FILE_MIGRATE_X") == 1, after
    assert engine.store.dc_for(engine.loc("stale.bin").file_key) == STALE_TRUE_DC
    # more reads in this process: no more migrations, no getFile to the stale DC
    engine.store.clear_chunks()
    assert engine.read("stale.bin", MIB - 3, size - 1) == sandbox.expected("stale.bin", MIB - 3, size - 1)
    again = sandbox.snapshot()
    assert delta(after, again, "errors:FILE_MIGRATE_X") == 0
    assert delta(after, again, "requests:GetFile", dc=engine.loc("stale.bin").dc_id) == 0


def test_concurrent_readers_of_an_unknown_file_share_one_probe(engine, sandbox):
    """Several streams of different ranges start at once on a file whose DC is not known yet."""
    ranges = [(0, MIB), (MIB + 1, 2 * MIB + 50), (5, 6), (2 * MIB, 2 * MIB + 98)]

    async def all_at_once():
        return await asyncio.gather(*(engine.aread("stale2.bin", a, b) for a, b in ranges))

    before = sandbox.snapshot()
    results = engine.call(all_at_once())
    for (a, b), got in zip(ranges, results):
        assert got == sandbox.expected("stale2.bin", a, b), (a, b)
    assert delta(before, sandbox.snapshot(), "errors:FILE_MIGRATE_X") == 1


def test_no_migrate_after_restart(make_engine, sandbox, tmp_path):
    state = tmp_path / "restart"
    first = make_engine(state)
    before = sandbox.snapshot()
    assert first.read("stale.bin", 0, 2 * MIB) == sandbox.expected("stale.bin", 0, 2 * MIB)
    assert delta(before, sandbox.snapshot(), "errors:FILE_MIGRATE_X") == 1
    first.close()

    second = make_engine(state)      # new client, pool, fetcher, catalog; same state dir
    second.store.clear_chunks()      # force the network: only the DC map may help
    before = sandbox.snapshot()
    size = second.entries["stale.bin"].size
    assert second.read("stale.bin", 0, size - 1) == sandbox.content("stale.bin")
    after = sandbox.snapshot()
    assert delta(before, after, "errors:FILE_MIGRATE_X") == 0, after
    assert delta(before, after, "requests:GetFile", dc=second.loc("stale.bin").dc_id) == 0
    assert delta(before, after, "requests:GetFile", dc=STALE_TRUE_DC) > 0


def test_exported_authorisation_survives_restart(make_engine, sandbox, tmp_path):
    state = tmp_path / "auth"
    first = make_engine(state)
    before = sandbox.snapshot()
    assert first.read("big.bin", 0, 3 * MIB) == sandbox.expected("big.bin", 0, 3 * MIB)   # 4 senders
    after = sandbox.snapshot()
    # one export for the DC (not one per sender), one import there
    assert delta(before, after, "exports", dc=HOME_DC) == 1, after
    assert delta(before, after, "imports", dc=4) == 1, after
    assert delta(before, after, "auth_keys", dc=4) == 1, after
    first.close()

    second = make_engine(state)
    second.store.clear_chunks()
    before = sandbox.snapshot()
    assert second.read("big.bin", 5 * MIB, 9 * MIB) == sandbox.expected("big.bin", 5 * MIB, 9 * MIB)
    assert second.read("d4.bin", 0, MIB) == sandbox.expected("d4.bin", 0, MIB)
    after = sandbox.snapshot()
    assert delta(before, after, "exports") == 0, after
    assert delta(before, after, "imports") == 0, after
    assert delta(before, after, "auth_keys", dc=4) == 0, after           # the kept key, no new DH
    assert delta(before, after, "errors:AUTH_KEY_UNREGISTERED", dc=4) == 0, after
    assert second.stats()["4"]["senders"] >= 2                         # several senders, one key


def test_home_dc_reads_need_no_export(engine, sandbox):
    before = sandbox.snapshot()
    assert engine.read("home.bin") == sandbox.content("home.bin")
    after = sandbox.snapshot()
    assert delta(before, after, "exports") == 0
    assert delta(before, after, "imports") == 0
    assert delta(before, after, "errors:DC_ID_INVALID") == 0
    assert delta(before, after, "requests:GetFile", dc=HOME_DC) > 0


# --- floods and revocations around authorising a foreign DC ----------------------------------------
@pytest.mark.timeout(60)
def test_flood_wait_on_export_is_retry_later(engine, sandbox):
    """auth.exportAuthorization answered FLOOD_WAIT (what a restart loop that re-exports earns):
    the HTTP client must be told when to come back (RetryLater), not get a generic failure."""
    sandbox.faults({"flood_wait": [{"dc": HOME_DC, "method": "ExportAuthorization", "seconds": 120,
                                    "count": 1}]})
    before = sandbox.snapshot()
    with pytest.raises(RetryLater) as e:
        engine.read("d4.bin", 0, 100)
    assert e.value.seconds > 10
    assert delta(before, sandbox.snapshot(), "errors:FLOOD_WAIT_X", dc=HOME_DC) == 1


@pytest.mark.timeout(60)
def test_flood_wait_on_import_is_retry_later(engine, sandbox):
    sandbox.faults({"flood_wait": [{"dc": 4, "method": "ImportAuthorization", "seconds": 120,
                                    "count": 1}]})
    with pytest.raises(RetryLater) as e:
        engine.read("d4.bin", 0, 100)
    assert e.value.seconds > 10


def _revoke(sandbox, key: bytes) -> None:
    """Log the key out server-side (as 'terminate other sessions' or Telegram's own cleanup does)."""
    sandbox.keys.unbind(key_id_of(key))


@pytest.mark.timeout(60)
def test_revoked_kept_authorisation_is_exported_again_after_restart(make_engine, sandbox, tmp_path):
    state = tmp_path / "revoked"
    first = make_engine(state)
    assert first.read("d4.bin", 0, 100) == sandbox.expected("d4.bin", 0, 100)
    kept = first.store.dc_auth(4)
    assert kept is not None
    first.close()
    _revoke(sandbox, kept)

    second = make_engine(state)
    second.store.clear_chunks()
    before = sandbox.snapshot()
    assert second.read("d4.bin", 0, 2 * MIB) == sandbox.expected("d4.bin", 0, 2 * MIB)
    after = sandbox.snapshot()
    assert delta(before, after, "exports", dc=HOME_DC) == 1, after
    assert delta(before, after, "imports", dc=4) == 1, after
    assert second.store.dc_auth(4) != kept


@pytest.mark.timeout(60)
def test_authorisation_revoked_while_running_is_exported_again(engine, sandbox):
    """The DC forgets the exported authorisation while senders use it (AUTH_KEY_UNREGISTERED on
    getFile): the pool should re-export once and carry on, not fail every read until a restart."""
    assert engine.read("d4.bin", 0, 100) == sandbox.expected("d4.bin", 0, 100)
    _revoke(sandbox, engine.store.dc_auth(4))
    engine.store.clear_chunks()
    before = sandbox.snapshot()
    assert engine.read("d4.bin", 0, 2 * MIB) == sandbox.expected("d4.bin", 0, 2 * MIB)
    assert delta(before, sandbox.snapshot(), "exports", dc=HOME_DC) == 1


# --- idle senders ----------------------------------------------------------------------------------
@pytest.mark.timeout(60)
def test_reaped_senders_reopen_without_export(make_engine, sandbox):
    engine = make_engine(idle_seconds=1.0)
    assert engine.read("d4.bin", 0, 3 * MIB) == sandbox.expected("d4.bin", 0, 3 * MIB)
    assert engine.stats()["4"]["senders"] > 0
    wait_until(lambda: engine.stats()["4"]["senders"] == 0, 15, lambda: engine.stats())
    before = sandbox.snapshot()
    assert engine.read("d4.bin", 3 * MIB, 5 * MIB) == sandbox.expected("d4.bin", 3 * MIB, 5 * MIB)
    after = sandbox.snapshot()
    assert delta(before, after, "exports") == 0, after
    assert delta(before, after, "imports") == 0, after
    assert delta(before, after, "auth_keys", dc=4) == 0, after
    assert delta(before, after, "connections", dc=4) >= 1, after


# --- connections to the DCs a listing names, opened before the first read (issue 19) --------------

@pytest.mark.timeout(60)
def test_the_dcs_a_listing_names_are_connected_before_the_first_read(make_engine, sandbox, tmp_path):
    """The listing names files on DCs 3 and 4: a sender to each is opened and authorised in the
    background, so the first read of a file there costs no connection, no key exchange and no
    export/import -- one getFile. After a restart the kept authorisation is reused for it."""
    state = tmp_path / "warm"
    for run in ("first", "restart"):
        before = sandbox.snapshot()
        engine = make_engine(state, connect_listed_dcs=True)      # lists the channel on start
        wait_until(lambda: all(engine.stats().get(str(dc), {}).get("senders") for dc in (3, 4)),
                   20, lambda: engine.stats())
        opened = sandbox.snapshot()
        if run == "first":
            assert delta(before, opened, "imports", dc=4) == 1 and delta(before, opened, "imports", dc=3) == 1
        else:
            assert delta(before, opened, "exports") == 0 and delta(before, opened, "auth_keys", dc=4) == 0
        engine.store.clear_chunks()
        assert engine.read("d4.bin", 0, 100) == sandbox.expected("d4.bin", 0, 100)
        after = sandbox.snapshot()
        for name in ("connections", "auth_keys", "exports", "imports"):
            assert delta(opened, after, name) == 0, (name, after)
        assert delta(opened, after, "requests:GetFile", dc=4) == 1
        engine.close()
