"""The write-history check against real processes (tests/write/history.py judges what is recorded).

test_history_under_faults_and_a_kill: 4 clients run a seeded mix of PUT (sized and chunked), MKCOL,
MOVE, COPY, DELETE and LOCK/UNLOCK over a small tree of the writable channel against `tgdav serve`,
while the sandbox answers FLOOD_WAIT, drops connections, takes the home DC down and loses upload
parts (FILE_PART_X_MISSING), and tgdav is SIGKILLed and restarted. Every request is recorded with its
answer and its times; the tree is read back by the restarted server and by a second one with an
empty state; the checker must find nothing (promises 1, 2 and 3).

test_sequential_history_matches_wsgidav: one client runs one seeded sequence against tgdav and
against WsgiDAV's FilesystemProvider on a temporary folder (the oracle): every answer has the same
class and the trees end the same (names, sizes, SHA-256).

test_replay_*: short fixed histories that once broke a promise (a lock through another spelling, a
LOCK racing a PUT or a DELETE, a MOVE in the same second as an overwrite, a folder moved onto
another, a COPY refused half-way), judged by the same checker.

Longer runs, one command (the figures are printed; TGDAV_HISTORY_REPORT=file.json keeps the whole
history and the anomalies in file.history.json and file.sequential.json):
    TGDAV_HISTORY_SEED=7 TGDAV_HISTORY_OPS=1500 python -m pytest -q -s --timeout 0 \
        tests/write/test_history.py
"""

from __future__ import annotations

import functools
import hashlib
import http.client
import json
import os
import random
import shutil
import signal
import threading
import time
import urllib.parse
import xml.etree.ElementTree as ET
from collections.abc import Iterator

import pytest
from contextlib import contextmanager
from pathlib import Path

from tests.write.conftest import PIECE_PARTS, WRITABLE, module_server, serve
from tests.write.history import (ABSENT, DIR, Checker, Namespace, Op, Step, body, join, outcome, plan)

SEED = int(os.environ.get("TGDAV_HISTORY_SEED", "1"))
OPS = int(os.environ.get("TGDAV_HISTORY_OPS", "400"))
CLIENTS = int(os.environ.get("TGDAV_HISTORY_CLIENTS", "4"))
SEQ_OPS = int(os.environ.get("TGDAV_HISTORY_SEQ_OPS", "60"))
KILL_EVERY = int(os.environ.get("TGDAV_HISTORY_KILL_EVERY", "300"))   # one kill per this many ops (at least one)
REPORT = os.environ.get("TGDAV_HISTORY_REPORT", "")
HISTORY_PIECE_PARTS = 4        # 2 MiB per message: the mix's bigger files are stored in 2 or 3 pieces
TIMEOUT = 120.0
NS = Namespace()
# WsgiDAV's FilesystemProvider on Linux keeps Readme.txt and readme.txt apart, tgdav's tree makes them
# one file (as Finder and Explorer do): the comparison with it leaves case variants out
SEQ_NS = Namespace(names=("a.bin", "Readme.txt", "b c.txt", "x 12:30 ü.bin"))
LOCKINFO = (b'<?xml version="1.0" encoding="utf-8"?><D:lockinfo xmlns:D="DAV:"><D:lockscope><D:exclusive/>'
            b'</D:lockscope><D:locktype><D:write/></D:locktype><D:owner>history</D:owner></D:lockinfo>')


def sha(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


class Target:
    """A WebDAV server and the folder a run works in (`base`, relative to the server's root)."""

    def __init__(self, url: str, base: str) -> None:
        parts = urllib.parse.urlsplit(url)
        self.host, self.port, self.root, self.base = parts.hostname, parts.port, parts.path.rstrip("/"), base

    def href(self, path: str, folder: bool = False) -> str:
        rel = f"{self.root}/{self.base}" + (f"/{path}" if path else "")
        return urllib.parse.quote(rel + ("/" if folder else ""))

    def url(self, path: str, folder: bool = False) -> str:
        return f"http://{self.host}:{self.port}{self.href(path, folder)}"

    def call(self, method: str, path: str, data=None, headers: dict | None = None, chunked: bool = False,
             read: bool = True) -> tuple[int, dict, bytes]:
        conn = http.client.HTTPConnection(self.host, self.port, timeout=TIMEOUT)
        try:
            folder = NS.is_folder(path) and method != "PUT"
            try:
                conn.request(method, self.href(path, folder), body=data, headers=headers or {},
                             encode_chunked=chunked)
            except (BrokenPipeError, ConnectionResetError):
                if conn.sock is None:       # nothing was sent: no answer to read
                    raise
                # the server answered before reading the whole body (409, 413, 423, ...) and
                # closed: its answer is still there to read; no answer there raises as a cut
            r = conn.getresponse()
            return r.status, dict(r.headers), (r.read() if read else b"")
        finally:
            conn.close()


def chunks(data: bytes, size: int = 64 * 1024, pace: float = 0.0):
    """`data` in chunks, `pace` seconds apart (a slow client)."""
    for i in range(0, len(data), size):
        if i and pace:
            time.sleep(pace)
        yield data[i:i + size]


class Recorder:
    def __init__(self) -> None:
        self.lock = threading.Lock()
        self.ops: list[Op] = []
        self.sizes: dict[str, int] = {}
        self.done = 0

    def request(self, target: Target, client: int, kind: str, path: str, *, dest: str = "", data: bytes | None = None,
                chunked: bool = False, overwrite: bool = True, headers: dict | None = None,
                token: str = "", step: int = -1, pace: float = 0.0) -> tuple[Op, dict, bytes]:
        op = Op(0, client, kind, path, dest=dest, overwrite=overwrite, token=bool(token), chunked=chunked, step=step)
        headers = dict(headers or {})
        if dest:
            headers["Destination"] = target.url(dest, NS.is_folder(dest))
            headers["Overwrite"] = "T" if overwrite else "F"
        if token and kind != "UNLOCK":
            headers["If"] = f"({token})"
        payload = data
        if kind == "PUT":
            op.body, op.size = sha(data), len(data)
            with self.lock:
                self.sizes[op.body] = len(data)
            headers["Content-Type"] = "application/octet-stream"
            if chunked:
                payload = chunks(data, pace=pace)
            else:
                headers["Content-Length"] = str(len(data))
        got_headers, answer = {}, b""
        op.start = time.monotonic()
        try:
            op.status, got_headers, answer = target.call(kind, path, payload, headers, chunked)
        except ConnectionRefusedError as e:
            op.refused, op.error = True, type(e).__name__
        except (OSError, http.client.HTTPException) as e:
            op.error = type(e).__name__
        op.end = time.monotonic()
        if kind == "GET" and op.status is not None:
            op.seen = sha(answer) if op.status == 200 else ABSENT if op.status == 404 else None
        if kind == "PROPFIND" and op.status is not None:
            op.seen = DIR if op.status == 207 else ABSENT if op.status == 404 else None
        with self.lock:
            op.id = len(self.ops) + 1
            self.ops.append(op)
        if op.refused:
            time.sleep(0.3)            # the server is restarting: no use asking at once again
        return op, got_headers, answer


def run_steps(rec: Recorder, target: Target, client: int, steps: list[Step]) -> None:
    for n, step in enumerate(steps):
        k = step.kind
        request = functools.partial(rec.request, target, client, step=n)
        if k == "PUT":
            request("PUT", step.path, data=body(step.seed, step.size), chunked=step.chunked)
        elif k == "GET":
            request("GET", step.path)
        elif k == "PROPFIND":
            request("PROPFIND", step.path, headers={"Depth": "0"})
        elif k in ("MKCOL", "DELETE"):
            request(k, step.path)
        elif k in ("MOVE", "COPY"):
            request(k, step.path, dest=step.dest, overwrite=step.overwrite)
        else:   # LOCKED: lock, write with the token, read, unlock
            op, headers, _ = request("LOCK", step.path, data=LOCKINFO,
                                         headers={"Timeout": "Second-600", "Depth": "0",
                                                  "Content-Type": "application/xml"})
            token = headers.get("Lock-Token", "")
            if outcome(op) == "ack" and token:
                for i in range(step.puts):
                    request("PUT", step.path, data=body(step.seed + 7 * i + 1, step.size),
                                token=token)
                request("GET", step.path, token=token)
                request("UNLOCK", step.path, headers={"Lock-Token": token}, token=token)
        with rec.lock:
            rec.done += 1


def setup_tree(target: Target) -> None:
    for path in ("",) + NS.static:
        status = target.call("MKCOL", path)[0]
        assert status == 201, f"MKCOL {path or target.base}: {status}"


# ---- reading the tree back ---------------------------------------------------------------------

def _retrying(call, deadline: float):
    """A read of the quiet tree: a server that is flooded, or still starting, is asked again."""
    while True:
        try:
            status, headers, data = call()
            if status not in (502, 503, 504) or time.monotonic() > deadline:
                return status, headers, data
        except (OSError, http.client.HTTPException):
            if time.monotonic() > deadline:
                raise
        time.sleep(1.0)


def listing(target: Target, folder: str, deadline: float) -> dict[str, int]:
    status, _, data = _retrying(lambda: target.call("PROPFIND", folder, headers={"Depth": "1"}), deadline)
    assert status == 207, f"PROPFIND {folder}: {status}"
    entries: dict[str, int] = {}
    own = urllib.parse.unquote(target.href(folder, True)).rstrip("/")
    for resp in ET.fromstring(data).iter("{DAV:}response"):
        href = urllib.parse.unquote(urllib.parse.urlsplit(resp.findtext("{DAV:}href")).path).rstrip("/")
        if href == own:
            continue
        is_dir = resp.find(".//{DAV:}resourcetype/{DAV:}collection") is not None
        length = resp.findtext(".//{DAV:}getcontentlength")
        entries[href.rpartition("/")[2]] = -1 if is_dir else int(length or 0)
    return entries


def snapshot(target: Target, wait: float = 180.0, ns: Namespace = NS) -> tuple[dict[str, str], dict[str, dict[str, int]], float, float]:
    """(path -> value for the whole namespace, folder -> listing, started, ended)."""
    deadline = time.monotonic() + wait
    lo = time.monotonic()
    state: dict[str, str] = {}
    listings: dict[str, dict[str, int]] = {}
    for folder in ns.folders:
        status = _retrying(lambda: target.call("PROPFIND", folder, headers={"Depth": "0"}), deadline)[0]
        assert status in (207, 404), f"PROPFIND {folder}: {status}"
        state[folder] = DIR if status == 207 else ABSENT
        if status == 207:
            listings[folder] = listing(target, folder, deadline)
    for path in ns.files:
        status, _, data = _retrying(lambda: target.call("GET", path), deadline)
        assert status in (200, 404), f"GET {path}: {status}"
        state[path] = sha(data) if status == 200 else ABSENT
    return state, listings, lo, time.monotonic()


# ---- faults ------------------------------------------------------------------------------------

FLOODED = ("SendMedia", "EditMessage", "DeleteMessages", "SaveFilePart", "SaveBigFilePart",
           "ForwardMessages", "SendMessage", "GetMessages", "GetHistory")


class Faults:
    """Injects sandbox faults at seeded moments and kills/restarts tgdav while the clients run."""

    def __init__(self, sandbox, seed: int, rec: Recorder, total: int, server: dict) -> None:
        self.sandbox, self.rnd, self.rec, self.total, self.server = sandbox, random.Random(seed), rec, total, server
        self.home = int(sandbox.info.get("home_dc", 2))
        self.injected = {"flood_wait": 0, "drop": 0, "dc_down": 0, "part_lost": 0, "kill": 0}
        self.restarts: list[tuple[float, float]] = []
        kills = max(1, total // KILL_EVERY)
        self.kill_at = [int(total * (i + 0.45) / kills) for i in range(kills)]
        self.stopping = threading.Event()
        self.errors: list[BaseException] = []
        self.thread = threading.Thread(target=self._run, daemon=True)

    def _run(self) -> None:
        try:
            while not self.stopping.is_set():
                if self.kill_at and self.rec.done >= self.kill_at[0]:
                    self.kill_at.pop(0)
                    self.kill()
                    continue
                if self.stopping.wait(self.rnd.uniform(0.3, 1.2)):
                    break
                self.inject()
        except BaseException as e:      # the test fails on it after the clients stop
            self.errors.append(e)

    def inject(self) -> None:
        kind = self.rnd.choices(["flood_wait", "drop", "dc_down", "part_lost"], [4, 2, 3, 1])[0]
        if kind == "part_lost":     # Telegram forgets a part it acknowledged: FILE_PART_X_MISSING at sending
            self.sandbox.post("/faults", {"file_part_missing": [{"part": self.rnd.randint(0, 3), "count": 1}]})
        elif kind == "flood_wait":
            self.sandbox.post("/faults", {"flood_wait": [{"dc": 0, "method": self.rnd.choice(FLOODED),
                                                          "seconds": self.rnd.randint(1, 4), "count": 1}]})
        elif kind == "drop":
            self.sandbox.post("/faults", {"drop_after_bytes": {str(self.home): {
                "bytes": self.rnd.randint(2_000, 400_000), "count": 1}}})
        else:      # the home DC down for a moment: every connection to it is cut, new ones refused
            self.sandbox.post("/faults", {"down": [self.home], "drop_after_bytes": {str(self.home): {
                "bytes": self.rnd.randint(2_000, 400_000), "count": 1}}})
            self.injected["drop"] += 1
            time.sleep(self.rnd.uniform(0.5, 2.0))
            self.sandbox.post("/faults", {"down": []})
        self.injected[kind] += 1

    def kill(self) -> None:
        proc = self.server["proc"]
        killed = time.monotonic()
        os.killpg(proc.pid, signal.SIGKILL)
        proc.wait(10)
        _, proc = serve(self.server["config"], self.sandbox.root / "logs" / "history")
        self.sandbox.procs.append(proc)
        self.server["proc"] = proc
        self.restarts.append((killed, time.monotonic()))
        self.injected["kill"] += 1

    def __enter__(self) -> "Faults":
        self.thread.start()
        return self

    def __exit__(self, *exc) -> None:
        self.stopping.set()
        self.thread.join(120)
        self.sandbox.post("/faults", {"clear": True, "upload_max_fileparts": {"default": HISTORY_PIECE_PARTS,
                                                                              "premium": 2 * HISTORY_PIECE_PARTS}})


@contextmanager
def small_pieces(sandbox):
    sandbox.post("/faults", {"upload_max_fileparts": {"default": HISTORY_PIECE_PARTS,
                                                      "premium": 2 * HISTORY_PIECE_PARTS}})
    try:
        yield
    finally:
        sandbox.post("/faults", {"clear": True,
                                 "upload_max_fileparts": {"default": PIECE_PARTS, "premium": 2 * PIECE_PARTS}})


def run_clients(rec: Recorder, target: Target, steps: list[list[Step]]) -> None:
    threads = [threading.Thread(target=run_steps, args=(rec, target, i, s), daemon=True) for i, s in enumerate(steps)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(3600)
        assert not t.is_alive(), "a client is stuck"


def report(name: str, figures: dict, checker: Checker, differences: list[str] = ()) -> str:
    text = f"{name}: " + ", ".join(f"{k} {v}" for k, v in figures.items())
    if REPORT:
        Path(REPORT).with_suffix(f".{name}.json").write_text(json.dumps({
            "figures": figures, "differences": list(differences),
            "history": [o.line(checker.t0) for o in checker.ops],
            "anomalies": [str(a) for a in checker.anomalies]}, indent=1, ensure_ascii=False))
    print("\n" + text)
    return text


def failure(checker: Checker, limit: int = 12) -> str:
    return (f"{len(checker.anomalies)} anomalies (seed {SEED}):\n"
            + "\n".join(str(a) for a in checker.anomalies[:limit]))


# ---- the tests ---------------------------------------------------------------------------------

def test_history_under_faults_and_a_kill(sandbox):
    counters = ("errors:FLOOD_WAIT_X", "errors:FILE_PART_X_MISSING", "dropped", "refused")
    before = {k: sandbox.total(k) for k in counters}
    with small_pieces(sandbox):
        url, proc, config = sandbox.server("history")
        target = Target(url, f"{WRITABLE}/history-{SEED}-{OPS}")
        setup_tree(target)
        rec = Recorder()
        steps = plan(SEED, CLIENTS, OPS, NS)
        server = {"proc": proc, "config": config}
        started = time.monotonic()
        with Faults(sandbox, SEED, rec, OPS, server) as faults:
            run_clients(rec, target, steps)
        took = time.monotonic() - started
        assert not faults.errors, faults.errors
        checker = Checker(rec.ops, NS, faults.restarts, rec.sizes)
        checker.run()
        state, listings, lo, hi = snapshot(target)
        checker.check_final(state, listings, lo, hi, "restarted server")
        fresh_url, _, _ = sandbox.server("history-fresh")
        fresh = Target(fresh_url, target.base)
        state2, listings2, lo2, hi2 = snapshot(fresh)
        checker.check_final(state2, listings2, lo2, hi2, "fresh server")
        checker.check_replicas(state, state2, "restarted server", "fresh server", listings, listings2)
    seen = {k: sandbox.total(k) - before[k] for k in counters}
    outcomes = [outcome(o) for o in rec.ops]
    if REPORT:      # the servers' logs beside the report: pytest's temporary folders do not last
        logs = Path(REPORT).with_suffix(".logs")
        logs.mkdir(exist_ok=True)
        for log in (sandbox.root / "logs").glob("history*"):
            shutil.copy(log, logs / log.name)
    report("history", {
        "seed": SEED, "clients": CLIENTS, "steps": OPS, "requests": len(rec.ops),
        "acknowledged": outcomes.count("ack"), "refused": outcomes.count("refused"),
        "failed or cut": outcomes.count("maybe"), "timeouts": sum(o.error == "TimeoutError" for o in rec.ops),
        "reads checked": sum(1 for o in rec.ops if o.seen),
        "faults injected": faults.injected, "sandbox saw": seen, "seconds": round(took, 1),
        "loadavg": Path("/proc/loadavg").read_text().split()[0], "anomalies": len(checker.anomalies)}, checker)
    assert faults.injected["kill"] >= 1 and sum(faults.injected.values()) >= 3
    assert outcomes.count("ack") >= OPS // 3      # the run did write, it was not refused throughout
    assert not checker.anomalies, failure(checker)
    hung = [o.line(checker.t0) for o in rec.ops if o.error == "TimeoutError"]
    assert not hung, f"requests without an answer for {TIMEOUT:.0f} s:\n" + "\n".join(hung)


def test_sequential_history_matches_wsgidav(sandbox, tmp_path):
    """The same single-client sequence against tgdav and against WsgiDAV's FilesystemProvider."""
    from tests.write.oracle import filesystem_dav

    steps = plan(SEED + 1000, 1, SEQ_OPS, SEQ_NS, big=False)
    runs = {}
    with small_pieces(sandbox):
        url, _, _ = sandbox.server("history-seq")
        with filesystem_dav(tmp_path / "oracle") as oracle_url:
            for name, base_url in (("wsgidav", oracle_url), ("tgdav", url)):
                base = f"seq-{SEED}" if name == "wsgidav" else f"{WRITABLE}/seq-{SEED}"
                target = Target(base_url, base)
                setup_tree(target)
                rec = Recorder()
                run_steps(rec, target, 0, steps[0])
                runs[name] = (rec, snapshot(target, wait=60, ns=SEQ_NS))
    (orec, (ostate, olist, _, _)), (trec, (tstate, tlist, lo, hi)) = runs["wsgidav"], runs["tgdav"]
    checker = Checker(trec.ops, SEQ_NS, (), trec.sizes)
    checker.run()
    checker.check_final(tstate, tlist, lo, hi, "tgdav")
    differ = []
    for n in range(len(steps[0])):
        a = [o for o in orec.ops if o.step == n]
        b = [o for o in trec.ops if o.step == n]
        if [(o.kind, (o.status or 0) // 100) for o in a] != [(o.kind, (o.status or 0) // 100) for o in b]:
            differ.append(f"step {n}: wsgidav " + "; ".join(o.line(orec.ops[0].start) for o in a)
                          + "\n        tgdav   " + "; ".join(o.line(trec.ops[0].start) for o in b))
    tree_differ = [f"{p}: wsgidav {str(ostate[p])[:10]}, tgdav {str(tstate.get(p))[:10]}"
                   for p in ostate if ostate[p] != tstate.get(p)]
    list_differ = [f"{f}: wsgidav {sorted(olist[f].items())}, tgdav {sorted(tlist.get(f, {}).items())}"
                   for f in olist if olist[f] != tlist.get(f)]
    report("sequential", {"seed": SEED + 1000, "requests": len(trec.ops), "status classes differ": len(differ),
                          "paths differ": len(tree_differ), "listings differ": len(list_differ),
                          "anomalies": len(checker.anomalies)}, checker, differ + tree_differ + list_differ)
    assert not differ, "answers differ from WsgiDAV's FilesystemProvider:\n" + "\n".join(differ[:20])
    assert not tree_differ and not list_differ, "\n".join(tree_differ + list_differ)
    assert not checker.anomalies, failure(checker)


def test_snapshot_reads_names_sizes_and_bytes(tmp_path):
    """The oracle server and snapshot() agree with the files on disk (the comparison's own check)."""
    from tests.write.oracle import filesystem_dav

    with filesystem_dav(tmp_path / "root") as url:
        target = Target(url, "t")
        setup_tree(target)
        assert target.call("PUT", join("d0", NS.names[3]), b"hello")[0] == 201
        assert target.call("PUT", NS.names[1], b"")[0] == 201
        state, lists, _, _ = snapshot(target)
    assert (tmp_path / "root" / "t" / "d0" / NS.names[3]).read_bytes() == b"hello"
    assert state[join("d0", NS.names[3])] == sha(b"hello") and state[NS.names[1]] == sha(b"")
    assert state["d2"] == ABSENT and state["d1"] == DIR and state["d0/a.bin"] == ABSENT
    assert lists["d0"] == {NS.names[3]: 5} and lists[""] == {"d0": -1, "d1": -1, NS.names[1]: 0}


# ---- replays: short fixed histories that once broke a promise, judged by the same checker -------

@pytest.fixture(scope="module")
def replay_server(sandbox) -> Iterator[str]:
    with module_server(sandbox, "history-replay") as url:
        yield url


def _replay(sandbox, url: str, name: str, script) -> Checker:
    """Run `script(request)` (request(client, kind, path, **kw) -> (Op, headers, body)) one request
    at a time in a fresh base folder, then judge the history and the tree read back."""
    target = Target(url, f"{WRITABLE}/replay-{name}")
    setup_tree(target)
    rec = Recorder()
    script(lambda client, kind, path, **kw: rec.request(target, client, kind, path, **kw))
    sandbox.post("/faults", {"clear": True, "upload_max_fileparts": {"default": PIECE_PARTS,
                                                                      "premium": 2 * PIECE_PARTS}})
    checker = Checker(rec.ops, NS, (), rec.sizes)
    checker.run()
    state, listings, lo, hi = snapshot(target, wait=90)      # a flooded pool answers 503 for a while
    checker.check_final(state, listings, lo, hi)
    if REPORT:
        report(f"replay-{name}", {"requests": len(rec.ops), "anomalies": len(checker.anomalies)}, checker)
    return checker


def _without_the_token(request, client: int) -> None:
    """PUT, MOVE onto and DELETE of d0/readme.txt, without a lock token."""
    request(client, "PUT", "d0/readme.txt", data=b"no token")
    request(client, "MOVE", "a.bin", dest="d0/readme.txt")
    request(client, "DELETE", "d0/readme.txt")


def _release(request, client: int, path: str, token: str) -> None:
    """The lock holder reads its file with the token, then unlocks it."""
    request(client, "GET", path, token=token)
    request(client, "UNLOCK", path, headers={"Lock-Token": token}, token=token)


def _lock(request, client: int, path: str) -> str:
    op, headers, _ = request(client, "LOCK", path, data=LOCKINFO, headers={"Timeout": "Second-600", "Depth": "0"})
    assert outcome(op) == "ack", op.line()
    return headers["Lock-Token"]


def test_replay_a_lock_holds_every_spelling_of_its_name(sandbox, replay_server):
    """Readme.txt and readme.txt are one file: a lock on one is a lock on the other (promise 3)."""
    def script(request):
        request(0, "PUT", "d0/Readme.txt", data=b"locked version")
        token = _lock(request, 0, "d0/Readme.txt")
        request(1, "PUT", "d0/readme.txt", data=b"no token")
        request(0, "GET", "d0/Readme.txt", token=token)
        request(0, "UNLOCK", "d0/Readme.txt", headers={"Lock-Token": token}, token=token)
    checker = _replay(sandbox, replay_server, "lock-spelling", script)
    assert not checker.anomalies, failure(checker)


def test_replay_a_lock_of_a_missing_file_holds_every_spelling(sandbox, replay_server):
    """LOCK of a missing Readme.txt makes it (empty, 201); readme.txt is the same file: PUT, DELETE
    and MOVE onto it without the token are refused while the lock is held (promise 3)."""
    def script(request):
        request(1, "PUT", "a.bin", data=b"to move")
        token = _lock(request, 0, "d0/Readme.txt")
        _without_the_token(request, 1)
        request(0, "PUT", "d0/Readme.txt", data=b"with the token", token=token)
        _without_the_token(request, 1)
        _release(request, 0, "d0/Readme.txt", token)
    checker = _replay(sandbox, replay_server, "lock-null-spelling", script)
    assert not checker.anomalies, failure(checker)


def test_replay_a_lock_granted_during_a_slow_put_of_another_spelling(sandbox, replay_server):
    """A slow PUT of readme.txt is under way when Readme.txt (missing) is LOCKed: the LOCK is refused
    while the PUT receives its body, or granted, and then readme.txt is the locked file: writes
    without the token are refused until it is released (promises 2 and 3)."""
    def script(request):
        request(1, "PUT", "a.bin", data=b"to move")
        slow = threading.Thread(target=request, args=(1, "PUT", "d0/readme.txt"),
                                kwargs={"data": body(5, 640 * 1024), "chunked": True, "pace": 0.1})
        slow.start()
        time.sleep(0.3)
        _, headers, _ = request(0, "LOCK", "d0/Readme.txt", data=LOCKINFO,
                                headers={"Timeout": "Second-600", "Depth": "0"})
        slow.join(60)
        _without_the_token(request, 2)
        if headers.get("Lock-Token"):
            _release(request, 0, "d0/Readme.txt", headers["Lock-Token"])
    checker = _replay(sandbox, replay_server, "lock-during-put", script)
    assert not checker.anomalies, failure(checker)


def test_replay_a_lock_asked_during_a_slow_put_of_a_new_file(sandbox, replay_server):
    """A slow PUT makes d0/readme.txt; a LOCK of it (either spelling) meanwhile is granted or
    refused, and a refused one leaves no empty file behind (promise 2)."""
    def script(request):
        for name in ("readme.txt", "Readme.txt"):
            request(0, "DELETE", "d0/readme.txt")
            slow = threading.Thread(target=request, args=(1, "PUT", "d0/readme.txt"),
                                    kwargs={"data": body(7, 640 * 1024), "chunked": True, "pace": 0.1})
            slow.start()
            time.sleep(0.3)
            op, headers, _ = request(2, "LOCK", f"d0/{name}", data=LOCKINFO,
                                     headers={"Timeout": "Second-600", "Depth": "0"})
            request(3, "GET", f"d0/{name}")
            if headers.get("Lock-Token"):
                _release(request, 2, f"d0/{name}", headers["Lock-Token"])
            slow.join(60)
            request(3, "GET", "d0/readme.txt")
    checker = _replay(sandbox, replay_server, "lock-during-new-put", script)
    assert not checker.anomalies, failure(checker)


def test_replay_a_lock_granted_while_a_delete_is_under_way(sandbox, replay_server):
    """A DELETE slowed by a 400 ms link to Telegram while another client LOCKs the file: either the
    DELETE came first (the LOCK then makes an empty file) or the lock holds the file, never a lock
    granted and then dropped with its file, and never two exclusive locks (promise 3)."""
    def script(request):
        request(0, "PUT", "d0/a.bin", data=b"deleted or locked")
        sandbox.post("/link", {"latency_ms": 400})
        try:
            deleting = threading.Thread(target=request, args=(1, "DELETE", "d0/a.bin"))
            deleting.start()
            time.sleep(0.15)
            op, headers, _ = request(2, "LOCK", "d0/a.bin", data=LOCKINFO,
                                     headers={"Timeout": "Second-600", "Depth": "0"})
            deleting.join(60)
        finally:
            sandbox.post("/link", {"profile": "off"})
        token = headers.get("Lock-Token", "")
        if token:
            request(2, "GET", "d0/a.bin", token=token)
            request(3, "LOCK", "d0/a.bin", data=LOCKINFO, headers={"Timeout": "Second-600", "Depth": "0"})
            request(2, "UNLOCK", "d0/a.bin", headers={"Lock-Token": token}, token=token)
    checker = _replay(sandbox, replay_server, "lock-during-delete", script)
    assert not checker.anomalies, failure(checker)


def test_replay_a_refused_lock_changes_nothing(sandbox, replay_server):
    """A LOCK refused because another spelling of the name is locked makes no empty file there, and
    leaves no lock behind once the holder unlocks (promises 2 and 3)."""
    def script(request):
        request(0, "PUT", "d0/readme.txt", data=b"the locked body")
        token = _lock(request, 0, "d0/readme.txt")
        request(1, "LOCK", "d0/Readme.txt", data=LOCKINFO, headers={"Timeout": "Second-600", "Depth": "0"})
        request(1, "GET", "d0/Readme.txt")
        request(0, "GET", "d0/readme.txt", token=token)
        request(0, "UNLOCK", "d0/readme.txt", headers={"Lock-Token": token}, token=token)
        request(1, "PUT", "d0/readme.txt", data=b"after the unlock")
        request(1, "GET", "d0/readme.txt")
    checker = _replay(sandbox, replay_server, "lock-refused", script)
    assert not checker.anomalies, failure(checker)


def test_replay_a_locked_file_is_not_moved_away_under_another_spelling(sandbox, replay_server):
    """MOVE of Readme.txt while readme.txt is locked: 423, the file stays, the holder unlocks, a
    later LOCK finds no stale lock and makes nothing (promises 2 and 3)."""
    def script(request):
        request(0, "PUT", "d0/readme.txt", data=b"locked")
        token = _lock(request, 0, "d0/readme.txt")
        request(1, "MOVE", "d0/Readme.txt", dest="d1/readme.txt")
        request(0, "GET", "d0/readme.txt", token=token)
        request(0, "UNLOCK", "d0/readme.txt", headers={"Lock-Token": token}, token=token)
        again = _lock(request, 1, "d0/Readme.txt")
        request(1, "UNLOCK", "d0/Readme.txt", headers={"Lock-Token": again}, token=again)
        request(1, "GET", "d0/readme.txt")
    checker = _replay(sandbox, replay_server, "lock-move-spelling", script)
    assert not checker.anomalies, failure(checker)


def test_replay_two_locks_of_a_missing_file_at_once(sandbox, replay_server):
    """Two clients LOCK the same unmapped URL at the same moment, on nine paths: at most one lock is
    granted; the file is then the empty one a LOCK makes, and nothing else (promises 2 and 3)."""
    paths = [join(folder, name) for folder in ("", "d0", "d1") for name in ("a.bin", "readme.txt", NS.names[3])]

    def script(request):
        for path in paths:
            gate = threading.Barrier(2)
            answers: dict[int, tuple] = {}

            def lock(client: int) -> None:
                gate.wait(10)
                answers[client] = request(client, "LOCK", path, data=LOCKINFO,
                                          headers={"Timeout": "Second-600", "Depth": "0"})
            both = [threading.Thread(target=lock, args=(c,)) for c in (0, 1)]
            for t in both:
                t.start()
            for t in both:
                t.join(60)
            for client, (op, headers, _) in answers.items():
                if outcome(op) == "ack":
                    token = headers["Lock-Token"]
                    request(client, "GET", path, token=token)
                    request(client, "UNLOCK", path, headers={"Lock-Token": token}, token=token)
            request(2, "GET", path)
    checker = _replay(sandbox, replay_server, "two-locks", script)
    assert not checker.anomalies, failure(checker)


def test_replay_a_locked_child_is_not_deleted_with_its_folder(sandbox, replay_server):
    """A lock taken on an unmapped URL (an empty file made by LOCK) holds against a DELETE of its
    folder, as a lock on an existing file does (promise 3)."""
    def script(request):
        request(0, "MKCOL", "d2")
        request(0, "PUT", "d2/a.bin", data=b"kept")
        token = _lock(request, 0, "d2/Readme.txt")
        token2 = _lock(request, 2, "d2/a.bin")
        request(1, "DELETE", "d2")
        request(1, "MOVE", "d2", dest="d3")
        request(0, "PUT", "d2/Readme.txt", data=b"with the token", token=token)
        request(0, "GET", "d2/Readme.txt", token=token)
        request(0, "UNLOCK", "d2/Readme.txt", headers={"Lock-Token": token}, token=token)
        request(2, "UNLOCK", "d2/a.bin", headers={"Lock-Token": token2}, token=token2)
    checker = _replay(sandbox, replay_server, "lock-child", script)
    assert not checker.anomalies, failure(checker)


def test_replay_a_move_right_after_an_overwrite_wins(sandbox, replay_server):
    """PUT d0/a.bin, then at once MOVE a.bin onto it: the MOVE is the later acknowledged change, so
    d0/a.bin holds a.bin's body, even within one second of Telegram's dates (promise 1)."""
    def script(request):
        request(0, "PUT", "a.bin", data=b"moved body")
        request(0, "PUT", "d0/a.bin", data=b"first")
        while time.time() % 1 > 0.3:        # both changes inside one wall-clock second
            time.sleep(0.05)
        request(0, "PUT", "d0/a.bin", data=b"overwritten")
        request(0, "MOVE", "a.bin", dest="d0/a.bin")
        request(0, "GET", "d0/a.bin")
    checker = _replay(sandbox, replay_server, "move-same-second", script)
    assert not checker.anomalies, failure(checker)


def test_replay_overwrite_f_onto_another_spelling_is_refused(sandbox, replay_server):
    """readme.txt exists: MOVE and COPY onto Readme.txt with Overwrite: F find it (one file) and are
    refused (412), the moved file stays where it was (promises 1 and 2)."""
    def script(request):
        request(0, "PUT", "d0/readme.txt", data=b"kept")
        request(0, "PUT", "a.bin", data=b"to move")
        request(0, "COPY", "a.bin", dest="d0/Readme.txt", overwrite=False)
        request(0, "MOVE", "a.bin", dest="d0/Readme.txt", overwrite=False)
        request(0, "GET", "a.bin")
        request(0, "GET", "d0/readme.txt")
        request(0, "GET", "d0/Readme.txt")
    checker = _replay(sandbox, replay_server, "overwrite-f-spelling", script)
    assert not checker.anomalies, failure(checker)


def test_replay_a_folder_moved_onto_another_is_never_missing(sandbox, replay_server):
    """MOVE d3 onto d2 (Overwrite: T), eight times: readers of d2 during the moves see the old d2 or
    the new one, never no d2 (promise 2)."""
    def script(request):
        for folder in ("d2", "d3"):
            request(0, "MKCOL", folder)
            for i, name in enumerate(("a.bin", "readme.txt", NS.names[3])):
                request(0, "PUT", join(folder, name), data=body(hash((folder, i)) & 0xFFFF, 300_000))
        done = threading.Event()

        def watch() -> None:
            while not done.is_set():
                request(1, "PROPFIND", "d2", headers={"Depth": "0"})
        watcher = threading.Thread(target=watch)
        watcher.start()
        for _ in range(8):      # the gap, if there is one, is short: give the watcher eight chances
            time.sleep(0.05)
            request(0, "MOVE", "d3", dest="d2")
            request(0, "COPY", "d2", dest="d3")
        done.set()
        watcher.join(60)
        for name in ("a.bin", "readme.txt", NS.names[3]):
            request(0, "GET", join("d2", name))
    checker = _replay(sandbox, replay_server, "folder-onto-folder", script)
    assert not checker.anomalies, failure(checker)


def test_replay_a_failed_copy_onto_a_file_keeps_it(sandbox):
    """COPY onto an existing file that Telegram refuses half-way (a long FLOOD_WAIT on sending the
    copy): 503, and the destination keeps its body (promise 2). A server of its own: the flood gates
    its pool for 20 s."""
    url, _, _ = sandbox.server("history-replay-flood")
    def script(request):
        request(0, "PUT", "a.bin", data=b"source")
        request(0, "PUT", "d0/a.bin", data=b"destination")
        for method in ("SendMedia", "ForwardMessages"):
            sandbox.post("/faults", {"flood_wait": [{"dc": 0, "method": method, "seconds": 20, "count": 1}]})
        request(0, "COPY", "a.bin", dest="d0/a.bin")
        request(0, "GET", "d0/a.bin")
    checker = _replay(sandbox, url, "copy-flood", script)
    assert not checker.anomalies, failure(checker)
