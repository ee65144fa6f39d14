"""WriteGuard on its own (fakes, no sockets): a LOCK and a DELETE of one channel never run side by
side; a LOCK waiting behind a long change gets 503 with Retry-After rather than hanging."""

from __future__ import annotations

import threading

import pytest
from wsgidav.lock_man.lock_manager import LockManager
from wsgidav.lock_man.lock_storage import LockStorageDict

import tgdav.dav.guard as guard
from tgdav.errors import RetryLater
from tgdav.model import Folder


class _Catalog:
    def folder(self, name: str):
        return Folder(name, 1, name, None, 0.0, writable=True) if name in ("Uploads", "Other") else None

    def node(self, folder, path):
        return None          # nothing inside the channels: a LOCK is of a missing file


def _environ(method: str, path: str) -> dict:
    return {"REQUEST_METHOD": method, "PATH_INFO": path, "HTTP_OVERWRITE": "T"}


def _guard(app) -> guard.WriteGuard:
    return guard.WriteGuard(app, _Catalog(), lambda folder: None, LockManager(LockStorageDict()))


def test_a_lock_waits_for_a_delete_of_its_channel_then_runs(monkeypatch):
    monkeypatch.setattr(guard, "ORDER_WAIT", 0.3)
    inside, release, order = threading.Event(), threading.Event(), []

    def app(environ, start_response):
        order.append(environ["REQUEST_METHOD"] + " " + environ["PATH_INFO"])
        if environ["REQUEST_METHOD"] == "DELETE":
            inside.set()
            release.wait(10)
        return [b""]

    g = _guard(app)
    deleting = threading.Thread(target=g, args=(_environ("DELETE", "/Uploads/dir"), None))
    deleting.start()
    assert inside.wait(10)
    with pytest.raises(RetryLater):                          # waited ORDER_WAIT, then 503
        g(_environ("LOCK", "/Uploads/dir/a.txt"), None)
    assert g(_environ("LOCK", "/Other/a.txt"), None) == [b""]   # another channel is not held up
    release.set()
    deleting.join(10)
    assert g(_environ("LOCK", "/Uploads/dir/a.txt"), None) == [b""]
    assert order == ["DELETE /Uploads/dir", "LOCK /Other/a.txt", "LOCK /Uploads/dir/a.txt"]


def test_deletes_of_one_channel_run_side_by_side():
    both = threading.Barrier(2, timeout=10)

    def app(environ, start_response):
        both.wait()                     # fails (BrokenBarrierError) unless both are inside at once
        return [b""]

    g = _guard(app)
    threads = [threading.Thread(target=g, args=(_environ("DELETE", f"/Uploads/{n}"), None)) for n in "ab"]
    for t in threads:
        t.start()
    for t in threads:
        t.join(10)
    assert not both.broken
