"""WebDAV locks shared by replicas: cache/shared.lock_storage gives WsgiDAV's LockStorageRedis when
[state] redis is set. Two LockManagers (as two replicas' WsgiDAV apps hold them) on one Redis: a LOCK
taken through A is seen, and conflicts, through B; released through B, A sees it gone.
(The write path with its LOCK method is on another branch; it passes lock_storage() to WsgiDAV.)"""

from __future__ import annotations

import os
import signal

import pytest
from wsgidav.dav_error import DAVError
from wsgidav.lock_man.lock_manager import LockManager
from wsgidav.lock_man.lock_storage import LockStorageShelve
from wsgidav.lock_man.lock_storage_redis import LockStorageRedis

from tests.helpers import wait_until
from tests.scale.conftest import start_redis, stop
from tgdav.cache.shared import link_for, lock_storage, reads_degrade
from tgdav.errors import ConfigError, SharedStateAway


@pytest.fixture(scope="module")
def redis_url(tmp_path_factory):
    url, proc = start_redis(tmp_path_factory.mktemp("locks-redis"))
    yield url
    stop(proc)


def _lock(manager: LockManager, url: str, principal: str):
    return manager.acquire(url=url, lock_type="write", lock_scope="exclusive", lock_depth="0",
                           lock_owner=f"<owner>{principal}</owner>".encode(), timeout=600, principal=principal,
                           token_list=[])


def test_a_lock_taken_through_one_replica_is_seen_through_the_other(redis_url, tmp_path):
    a = LockManager(lock_storage(redis_url, tmp_path / "a"))
    b = LockManager(lock_storage(redis_url, tmp_path / "b"))
    assert isinstance(a.storage, LockStorageRedis)
    lock = _lock(a, "/Scale/report.odt", "alice")
    assert b.is_url_locked("/Scale/report.odt")
    assert [l["token"] for l in b.get_url_lock_list("/Scale/report.odt")] == [lock["token"]]
    with pytest.raises(DAVError):
        _lock(b, "/Scale/report.odt", "bob")
    b.release(lock["token"])
    assert not a.is_url_locked("/Scale/report.odt")


def test_without_redis_locks_stay_in_the_state_dir(tmp_path):
    storage = lock_storage("", tmp_path)
    assert isinstance(storage, LockStorageShelve)
    LockManager(storage)
    assert (tmp_path / "dav").is_dir()


def test_an_unreachable_redis_is_a_clear_error(tmp_path):
    from tests.e2e.conftest import free_port
    with pytest.raises(ConfigError, match="cannot reach Redis"):
        lock_storage(f"redis://127.0.0.1:{free_port()}/0", tmp_path)


def test_with_redis_frozen_a_write_never_passes_the_lock_check_and_a_read_sees_no_locks(tmp_path):
    """Promise 3 under promise 6: while Redis does not answer, every lock check of a write raises
    SharedStateAway (503), never "no locks"; only requests that read (reads_degrade) see none."""
    url, proc = start_redis(tmp_path / "redis")
    link = link_for(url)                                  # the one the lock storage goes through
    try:
        manager = LockManager(lock_storage(url, tmp_path))
        lock = _lock(manager, "/Scale/held.odt", "alice")
        os.kill(proc.pid, signal.SIGSTOP)
        try:
            with pytest.raises(SharedStateAway):
                manager.check_write_permission(url="/Scale/held.odt", depth="0", token_list=[], principal="bob")
            with pytest.raises(SharedStateAway):          # the breaker is open: refused at once
                _lock(manager, "/Scale/other.odt", "bob")
            assert link.state()["up"] is False

            seen = []
            app = reads_degrade(lambda environ, start: seen.append(manager.get_url_lock_list("/Scale/held.odt")))
            app({"REQUEST_METHOD": "PROPFIND"}, None)
            assert seen == [[]]
            with pytest.raises(SharedStateAway):
                app({"REQUEST_METHOD": "PUT"}, None)
        finally:
            os.kill(proc.pid, signal.SIGCONT)
        wait_until(lambda: link.up, 30, "its background PING finds it back", interval=0.2)
        assert [l["token"] for l in manager.get_url_lock_list("/Scale/held.odt")] == [lock["token"]]
        with pytest.raises(DAVError):
            manager.check_write_permission(url="/Scale/held.odt", depth="0", token_list=[], principal="bob")
    finally:
        stop(proc)
        link.close()
