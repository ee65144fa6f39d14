"""The composition root's wiring (tgdav.app.build_read_path, as `tgdav serve` builds it): the main
account alone is an Accounts of one, and the metrics' pool gauges add up every account's pool."""

from __future__ import annotations

from tgdav.app import pools_stats
from tgdav.telegram.accounts import Account, Accounts


def test_the_main_account_alone_reads_through_an_accounts_of_one(engine, sandbox):
    assert engine.read("mid.bin") == sandbox.content("mid.bin")
    accounts = engine.read_path.accounts
    (main,) = accounts.accounts
    assert (main.name, main.pool, main.fetcher) == ("main", engine.pool, engine.fetcher)
    assert accounts.stats()["main"]["parts"] >= 1          # every part came through it


class _Pool:
    def __init__(self, stats: dict) -> None:
        self._stats = stats

    def stats(self) -> dict:
        return self._stats


def test_the_pool_gauges_add_up_every_account():
    main = {"2": {"senders": 3, "busy": 1, "gated": 0, "gate_seconds": 0.0, "speed": 2e6},
            "4": {"senders": 1, "busy": 0, "gated": 1, "gate_seconds": 50.0, "speed": 1e6}}
    helper = {"4": {"senders": 2, "busy": 2, "gated": 0, "gate_seconds": 0.0, "speed": 3e6}}
    accounts = Accounts([Account("main", _Pool(main), None, None), Account("@helper", _Pool(helper), None, None)])
    assert pools_stats(accounts)() == {
        "2": main["2"],
        "4": {"senders": 3, "busy": 2, "gated": 1, "gate_seconds": 50.0, "speed": 3e6}}
    assert pools_stats(Accounts([Account("main", _Pool(main), None, None)]))() == main
