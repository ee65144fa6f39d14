"""WebDAV locks shared by replicas: cache/shared.lock_storage gives WsgiDAV's LockStorageRedis when
[state] redis is set. Two LockManagers (as two replicas' WsgiDAV apps hold them) on one Redis: a LOCK
taken through A is seen, and conflicts, through B; released through B, A sees it gone.
(The write path with its LOCK method is on another branch; it passes lock_storage() to WsgiDAV.)"""

from __future__ import annotations

import pytest
from wsgidav.dav_error import DAVError
from wsgidav.lock_man.lock_manager import LockManager
from wsgidav.lock_man.lock_storage import LockStorageShelve
from wsgidav.lock_man.lock_storage_redis import LockStorageRedis

from tests.scale.conftest import start_redis, stop
from tgdav.cache.shared import lock_storage
from tgdav.errors import ConfigError


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
