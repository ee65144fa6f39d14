"""The janitor: tgdav's own leftovers (pieces of an upload cut by kill -9, an old version left when
tgdav stopped between sending the new one and deleting the old) are deleted after the grace period;
untagged posts, other posters' messages, folder markers and uploads under way never are."""

from __future__ import annotations

import json
import os
import signal

import pytest

from tests.e2e.conftest import stop
from tests.write.conftest import PART, PIECE_PARTS, WRITABLE, http as request, random_bytes, serve, sha256
from tests.helpers import wait_until
from tests.write.test_atomic import _one_entry, _partial_put
from tgdav.model import FileEntry, Location
from tgdav.telegram import tree
from tgdav.telegram.janitor import leftovers

MiB = 1024 * 1024
NOW = 1_000_000.0
OLD = NOW - 7200            # older than the grace period below
GRACE = 3600


def _entry(mid: int) -> FileEntry:
    loc = Location("document", mid * 10, 1, b"r", 2, 100, 77, 5, mid)
    return FileEntry(name=f"doc{mid}", size=100, mime="application/octet-stream", modified=OLD,
                     created=OLD, etag="x", location=loc)


def _rec(mid: int, tag: tree.Tag | None, *, own: bool = True, date: float = OLD, media: bool = True):
    return tree.Record(mid, date, date, tag, "", _entry(mid) if media else None, own=own)


def test_the_rule_names_only_this_accounts_unshown_messages_past_the_grace_period():
    f = tree.Tag("file", ("a.bin",))
    records = [
        _rec(1, f), _rec(2, f),                                           # 2 wins, 1 superseded
        _rec(3, tree.Tag("file", ("b.bin",)), own=False), _rec(4, tree.Tag("file", ("b.bin",))),   # 3 not ours
        _rec(5, tree.Tag("piece", ("c.bin",), 1, 0, "aa")),               # an upload cut short
        _rec(6, tree.Tag("piece", ("d.bin",), 1, 0, "bb")),               # cut short, but its set ...
        _rec(7, tree.Tag("piece", ("d.bin",), 2, 0, "bb"), date=NOW - 10),  # ... got a piece just now
        _rec(8, tree.Tag("piece", ("e.bin",), 1, 0, "cc")),               # an upload running here
        _rec(9, tree.Tag("piece", ("f.bin",), 1, 0, "dd"), own=False),    # another poster's pieces
        _rec(10, None), _rec(11, None),                                   # untagged posts (same name)
        _rec(12, tree.Tag("dir", ("g",)), media=False), _rec(13, tree.Tag("dir", ("g",)), media=False),
        _rec(14, tree.Tag("file", ("h.bin",)), date=NOW - 10), _rec(15, tree.Tag("file", ("h.bin",))),
        _rec(16, tree.Tag("file", ("i.bin",)), date=NOW - 10), _rec(17, tree.Tag("file", ("i.bin",)),
                                                                   date=NOW - 5),   # too young
    ]
    found = leftovers(records, NOW, GRACE, running={"cc"})
    assert found == {"pieces": [5], "superseded": [1, 15]}
    # a tree that does not trust this account's tags: nothing of it is a tag, nothing goes
    assert leftovers(records, NOW, GRACE, trusted=lambda r: False) == {"pieces": [], "superseded": []}
    # what the janitor deletes was never shown
    shown = set(tree.build(records, 77, 5).message_ids())
    assert not shown & {5, 1, 15}


def _metric(url: str, name: str) -> float:
    body = request("GET", url + ":tgdav/metrics")[2].decode()
    return sum(float(line.split()[-1]) for line in body.splitlines() if line.startswith(name))


@pytest.fixture
def stopped_after():
    """Servers stopped when the test ends: a janitor with a 4 s grace sweeping every second must not
    outlive its test (it would take other tests' uploads under way for leftovers, and its whole
    reads count against the account's getHistory rule the session shares)."""
    procs: list = []
    yield procs
    for proc in procs:
        stop(proc)


def test_kill_9_leftovers_are_deleted_after_a_restart(sandbox, stopped_after):
    """An old version left by a delete that never happened (FLOOD_WAIT, then kill -9) and the first
    piece of a big overwrite cut by kill -9: after a restart the janitor deletes both (and nothing
    else), the files read as before, and the metrics and the status page count them."""
    extra = "\n[write]\nleftover_grace = 4\njanitor_interval = 1\n"
    url, proc, config = sandbox.server("janitor", extra)
    folder = f"{url}{WRITABLE}/janitor/"
    assert request("MKCOL", folder)[0] == 201
    keep = random_bytes(300_000, 60)
    assert request("PUT", folder + "keep.bin", keep)[0] == 201
    # between send and delete: the old version's delete is refused, the PUT is acknowledged
    assert request("PUT", folder + "twice.bin", b"version one")[0] == 201
    sandbox.post("/faults", {"flood_wait": [{"method": "DeleteMessages", "seconds": 3600, "count": 1}]})
    assert request("PUT", folder + "twice.bin", b"version two")[0] == 204
    sandbox.post("/faults", {"clear": True,
                             "upload_max_fileparts": {"default": PIECE_PARTS, "premium": 2 * PIECE_PARTS}})
    # mid-upload: one piece of a big overwrite posted, then kill -9
    old = random_bytes(2 * MiB + 1, 61)
    assert request("PUT", folder + "film.bin", old)[0] == 201
    sent = sandbox.total("messages_sent")
    new = random_bytes(PIECE_PARTS * PART * 2 + 3, 62)
    s = _partial_put(folder + "film.bin", len(new), new[:PIECE_PARTS * PART + 2 * MiB])
    wait_until(lambda: sandbox.total("messages_sent") > sent, 60)
    os.killpg(proc.pid, signal.SIGKILL)
    proc.wait(10)
    s.close()
    deleted = sandbox.total("messages_deleted")
    url2, proc2 = serve(config, sandbox.root / "logs" / "janitor-again")
    sandbox.procs.append(proc2)
    stopped_after.append(proc2)
    wait_until(lambda: sandbox.total("messages_deleted") >= deleted + 2, 120)
    wait_until(lambda: _metric(url2, "tgdav_janitor_last_sweep_timestamp_seconds") > 0, 60)
    folder2 = f"{url2}{WRITABLE}/janitor/"
    for _ in range(3):      # later looks find nothing more
        sweep = _metric(url2, "tgdav_janitor_last_sweep_timestamp_seconds")
        wait_until(lambda: _metric(url2, "tgdav_janitor_last_sweep_timestamp_seconds") > sweep, 30)
    assert sandbox.total("messages_deleted") == deleted + 2
    assert _metric(url2, 'tgdav_leftovers_deleted_total{kind="pieces"}') == 1
    assert _metric(url2, 'tgdav_leftovers_deleted_total{kind="superseded"}') == 1
    status = json.loads(request("GET", url2 + ":tgdav/status.json")[2])
    assert status["leftovers"]["deleted"] == {"pieces": 1, "superseded": 1}
    assert request("GET", folder2 + "twice.bin")[2] == b"version two"
    assert sha256(request("GET", folder2 + "film.bin")[2]) == sha256(old)
    assert sha256(request("GET", folder2 + "keep.bin")[2]) == sha256(keep)
    for name in ("twice.bin", "film.bin", "keep.bin"):
        _one_entry(folder2, name)
