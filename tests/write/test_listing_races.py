"""Every acknowledged write stays listed and readable while the listing is read again underneath it.

A server whose janitor reads the whole channel again every second (catalog.reread: the same whole
read a heal's channelDifferenceTooLong and the first write after a restart make), its getHistory
pages paced one a second so each read spans seconds, takes chunked PUTs and reads each back at once,
while other clients overwrite and delete files: every overwrite and delete removes a message, which
moves every older message up one place while a whole read pages through the history by place. A
reader lists the folder all along: every file acknowledged before a listing began must be in it, and
at the end every file ever acknowledged reads back with its SHA-256. Promise guarded: an acknowledged
file is never lost (DESIGN.md, promise 1); the janitor decides what to delete from these reads.
"""

from __future__ import annotations

import http.client
import threading
import urllib.parse
from concurrent.futures import ThreadPoolExecutor

import pytest

from tests.e2e.conftest import stop
from tests.write.conftest import WRITABLE, hrefs, http as request, login, random_bytes, serve, sha256

SEED_FILES = 240         # three pages of history and more: a whole read takes several paced pages
ROUNDS = 12              # chunked PUTs, each read back at once
SIZES = (1, 70_000, 524_288, 524_289, 1_300_000, 10 * 1024 * 1024)


def _chunked_put(url: str, data: bytes) -> int:
    parts = urllib.parse.urlsplit(url)
    conn = http.client.HTTPConnection(parts.hostname, parts.port, timeout=300)
    try:
        conn.request("PUT", parts.path, body=iter([data[i:i + 100_000] for i in range(0, len(data), 100_000)]),
                     encode_chunked=True, headers={"Transfer-Encoding": "chunked"})
        r = conn.getresponse()
        r.read()
        return r.status
    finally:
        conn.close()


def _listed(folder: str) -> set[str]:
    status, _, body = request("PROPFIND", folder, headers={"Depth": "1"})
    assert status == 207
    return {urllib.parse.unquote(h.rstrip("/").rsplit("/", 1)[-1]) for h in hrefs(body)}


@pytest.fixture
def rereading(sandbox):
    """A writable server re-reading every writable channel whole every second, its getHistory paced
    one call a second; stopped after the test (its reads count against the account's getHistory
    rule, which the other tests of the session share) after its folder is deleted."""
    config = login(sandbox.root / "rereads", sandbox.json_path, sandbox.info, "\n[write]\njanitor_interval = 1\n")
    config.write_text(config.read_text().replace("[telegram]\n", "[telegram]\nhistory_burst = 1\n", 1))
    url, proc = serve(config, sandbox.root / "logs" / "rereads")
    sandbox.procs.append(proc)
    yield url
    request("DELETE", f"{url}{WRITABLE}/rereads/")     # the shared channel stays as small as it was
    stop(proc)


def test_acknowledged_files_stay_listed_through_whole_reads_during_deletes(rereading):
    folder = f"{rereading}{WRITABLE}/rereads/"
    assert request("MKCOL", folder)[0] == 201
    acknowledged: dict[str, bytes] = {}

    def seed(n: int) -> None:
        name, data = f"seed{n:03d}.txt", b"seed %d\n" % n
        assert request("PUT", folder + name, data)[0] == 201
        acknowledged[name] = data
    with ThreadPoolExecutor(4) as pool:
        list(pool.map(seed, range(SEED_FILES)))

    stop = threading.Event()
    churned: list[int] = []
    lost: list[str] = []
    listings: list[int] = []

    def churn(worker: int) -> None:      # overwrites and deletes: messages go while reads page
        n = 0
        while not stop.is_set():
            name = f"churn{worker}-{n % 3}.txt"
            if n % 4 == 3:
                request("DELETE", folder + name)
            else:
                request("PUT", folder + name, b"churn %d" % n)
            n += 1
        churned.append(n)

    def lister() -> None:                # what was acknowledged before a listing is in it
        while not stop.is_set():
            before = set(acknowledged)
            missing = before - _listed(folder)
            lost.extend(f"{name}: not listed" for name in sorted(missing))
            listings.append(len(before))

    threads = [threading.Thread(target=churn, args=(w,), daemon=True) for w in range(2)]
    threads.append(threading.Thread(target=lister, daemon=True))
    for t in threads:
        t.start()
    try:
        for i in range(ROUNDS):
            name, data = f"put{i:03d}.bin", random_bytes(SIZES[i % len(SIZES)], 900 + i)
            status = _chunked_put(folder + name, data)
            assert status in (201, 204), (name, status)
            acknowledged[name] = data
            status, _, body = request("GET", folder + name)
            if status != 200 or sha256(body) != sha256(data):
                lost.append(f"{name}: {status} right after its PUT")
    finally:
        stop.set()
        for t in threads:
            t.join(60)
    assert sum(churned) > 0 and listings
    for name, data in sorted(acknowledged.items()):
        status, _, body = request("GET", folder + name)
        if status != 200 or sha256(body) != sha256(data):
            lost.append(f"{name}: {status} at the end")
    assert not lost, sorted(set(lost))[:20]
