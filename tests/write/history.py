"""A write-history checker for the drive's promises, pure code (no I/O): plan a seeded mix of WebDAV
writes for several clients, then judge a recorded history of those requests and what reads saw.

The model: every file and folder path of a small fixed namespace is a register holding one value:
ABSENT, DIR (a folder) or the SHA-256 of a body some PUT sent. Each request becomes effects on paths
(a folder's DELETE, MOVE and COPY reach every child name of the namespace). A request's outcome is
    ACK      2xx (but 207): it took effect, once, somewhere between its start and its answer;
    REFUSED  4xx, or a connection refused: it changed nothing (promise 2);
    MAYBE    5xx, 207, or no answer (cut by the kill): it took effect whole, or not at all.
A read over [lo, hi] may see the value of any effect W that is not refused, started before hi, and
is not *shadowed*: some ACK effect W2 on the same path that began after W settled and ended before
lo (promise 1: an acknowledged write stays readable until a later acknowledged write). A MOVE or COPY
writes whatever its source could hold during the request. While a client holds an exclusive lock
on a path, effects there from requests without its token cannot happen (promise 3): an ACK one is an
anomaly by itself, a MAYBE one is no candidate for any read.

Anomalies found (each one names the promise it breaks):
    corrupt      a read saw bytes no PUT sent (half a file, a mix of two)
    vanished     a read saw nothing where every candidate holds a file (an acknowledged write lost)
    stale        a read saw a value that a later acknowledged write had replaced, or a change by a
                 request that could not have happened (refused, or without the lock's token)
    lock         an acknowledged change of a locked path without its token, or a second lock
    overwrite    a MOVE or COPY with Overwrite: F acknowledged although its destination existed
                 throughout (under any spelling of its name)
    listing      a folder lists a name outside the namespace, or a size that is not its file's
    orphan       a file visible in a folder that is gone
    moved-half   a MOVE that failed left its file at both paths, or at neither
    replicas     two servers (the restarted one and one with an empty state) disagree on the tree
Soundness: a check only fires when no order of the requests consistent with the answers and their
times explains what was seen (the candidate sets only ever over-approximate).
"""

from __future__ import annotations

import hashlib
import random
from dataclasses import dataclass, field
from typing import Iterable

ABSENT = "absent"
DIR = "dir"
ANY = "*"                     # a value nothing could pin down (a cycle of moves): anything goes
EMPTY = hashlib.sha256(b"").hexdigest()
ACK, REFUSED, MAYBE = "ack", "refused", "maybe"
INF = float("inf")

READS = ("GET", "PROPFIND")
WRITES = ("PUT", "MKCOL", "DELETE", "MOVE", "COPY", "LOCK")


@dataclass(frozen=True)
class Namespace:
    """The paths a run may touch, relative to its base folder ("" is the base itself)."""
    static: tuple[str, ...] = ("d0", "d1")          # made at setup, never removed
    dynamic: tuple[str, ...] = ("d2", "d3")         # made, moved, copied and removed by the run
    names: tuple[str, ...] = ("a.bin", "Readme.txt", "readme.txt", "x 12:30 ü.bin")
    fold: bool = True          # names in one folder compared case-insensitively (tgdav's tree rule):
                               # one file, found under any spelling, listed under the newest one

    @property
    def folders(self) -> tuple[str, ...]:
        return ("",) + self.static + self.dynamic

    def children(self, folder: str) -> list[str]:
        return [join(folder, n) for n in self.names]

    @property
    def files(self) -> list[str]:
        return [f for d in self.folders for f in self.children(d)]

    def is_folder(self, path: str) -> bool:
        return path in self.folders

    def key(self, path: str) -> str:
        """The register a path is: with `fold`, Readme.txt and readme.txt of one folder are one file."""
        if not self.fold or self.is_folder(path):
            return path
        folder, _, name = path.rpartition("/")
        return join(folder, name.casefold())

    def keys(self, folder: str) -> list[str]:
        return sorted({self.key(c) for c in self.children(folder)})

    @property
    def file_keys(self) -> list[str]:
        return sorted({self.key(f) for f in self.files})

    def spell(self, path: str, value: str) -> str:
        """A file's value with the name it is under (with `fold`, one register holds either spelling)."""
        if not self.fold or value in (ABSENT, DIR, ANY) or self.is_folder(path):
            return value
        return path.rpartition("/")[2] + "\0" + value

    def initial(self, path: str) -> str:
        return DIR if path in ("",) + self.static else ABSENT

    def expected_entries(self, folder: str) -> set[str]:
        """Names a listing of `folder` may show."""
        sub = set(self.static + self.dynamic) if folder == "" else set()
        return set(self.names) | sub


def join(folder: str, name: str) -> str:
    return f"{folder}/{name}" if folder else name


def parent(path: str) -> str:
    return path.rpartition("/")[0]


# ---- the plan --------------------------------------------------------------------------------

@dataclass(frozen=True)
class Step:
    kind: str                 # GET PROPFIND PUT MKCOL DELETE MOVE COPY LOCKED (LOCK, PUTs with the token, UNLOCK)
    path: str
    dest: str = ""
    size: int = 0
    chunked: bool = False
    overwrite: bool = True
    puts: int = 0             # LOCKED: how many PUTs with the token
    seed: int = 0             # the body's bytes: body(seed, size)


def body(seed: int, size: int) -> bytes:
    return random.Random(seed).randbytes(size)


SIZES = ((0.02, 0, 0), (0.30, 1, 200), (0.33, 1024, 64 * 1024), (0.22, 100_000, 800_000),
         (0.13, 1_500_000, 5_000_000))


def _size(rnd: random.Random, big: bool) -> int:
    x = rnd.random()
    for share, lo, hi in SIZES:
        if x < share:
            return rnd.randint(lo, hi) if (big or hi < 1_000_000) else rnd.randint(100_000, 800_000)
        x -= share
    return rnd.randint(1, 200)


def plan(seed: int, clients: int, ops: int, ns: Namespace = Namespace(), big: bool = True) -> list[list[Step]]:
    """`ops` steps in all, shared out over `clients`, the same for the same arguments. `big`: files
    of several MiB (several messages each where the sandbox's part limit is low) are in the mix."""
    rnd = random.Random(seed)
    files, dynamic = ns.files, list(ns.dynamic)
    table = [("PUT", 34), ("GET", 16), ("PROPFIND", 3), ("MOVE", 9), ("COPY", 6), ("DELETE", 8),
             ("MKCOL", 6), ("DELDIR", 4), ("MOVEDIR", 4), ("COPYDIR", 3), ("LOCKED", 7)]
    kinds, weights = zip(*table)
    out: list[list[Step]] = [[] for _ in range(clients)]
    for i in range(ops):
        kind = rnd.choices(kinds, weights)[0]
        tag = seed * 1_000_003 + i
        if kind == "PUT":
            step = Step("PUT", rnd.choice(files), size=_size(rnd, big), chunked=rnd.random() < 0.5, seed=tag)
        elif kind == "GET":
            step = Step("GET", rnd.choice(files))
        elif kind == "PROPFIND":
            step = Step("PROPFIND", rnd.choice(ns.folders[1:]))
        elif kind in ("MOVE", "COPY"):
            src, dst = rnd.sample(files, 2)
            step = Step(kind, src, dst, overwrite=rnd.random() < 0.7)
        elif kind == "DELETE":
            step = Step("DELETE", rnd.choice(files))
        elif kind == "MKCOL":
            step = Step("MKCOL", rnd.choice(dynamic))
        elif kind == "DELDIR":
            step = Step("DELETE", rnd.choice(dynamic))
        elif kind in ("MOVEDIR", "COPYDIR"):
            src, dst = rnd.sample(dynamic, 2)
            step = Step(kind[:4], src, dst, overwrite=rnd.random() < 0.5)
        else:
            step = Step("LOCKED", rnd.choice(files), size=_size(rnd, False), puts=rnd.randint(1, 2), seed=tag)
        out[i % clients].append(step)
    return out


# ---- the history -----------------------------------------------------------------------------

@dataclass
class Op:
    """One request as sent and answered. Times are one monotonic clock of the process that sent it."""
    id: int
    client: int
    kind: str                  # GET PROPFIND PUT MKCOL DELETE MOVE COPY LOCK UNLOCK
    path: str
    dest: str = ""
    body: str = ""             # PUT: SHA-256 of the body sent
    size: int = 0
    overwrite: bool = True
    token: bool = False        # sent with this client's lock token for `path`
    start: float = 0.0
    end: float = 0.0
    status: int | None = None  # None: no answer
    refused: bool = False      # no answer because the connection was refused (nothing was sent)
    error: str = ""
    seen: str | None = None    # reads: the value seen (sha, ABSENT, DIR); None: nothing usable
    chunked: bool = False
    step: int = -1             # which step of the client's plan sent it

    def line(self, t0: float = 0.0) -> str:
        what = f"{self.kind} {self.path or '/'}" + (f" -> {self.dest}" if self.dest else "")
        extra = (f" body={self.body[:10]} size={self.size}{' chunked' if self.chunked else ''}"
                 if self.kind == "PUT" else "")
        extra += " token" if self.token else ""
        extra += f" overwrite={'T' if self.overwrite else 'F'}" if self.kind in ("MOVE", "COPY") else ""
        answer = str(self.status) if self.status is not None else ("refused" if self.refused else f"cut ({self.error})")
        seen = f" saw={self.seen[:10] if self.seen not in (ABSENT, DIR) else self.seen}" if self.seen else ""
        return (f"#{self.id} c{self.client} [{self.start - t0:.2f}..{self.end - t0:.2f}] {what}{extra}"
                f" -> {answer}{seen}")


def outcome(op: Op) -> str:
    if op.status is None:
        return REFUSED if op.refused else MAYBE
    if op.status == 207 and op.kind in ("DELETE", "MOVE", "COPY"):
        return MAYBE
    if 200 <= op.status < 300:
        return ACK
    if 400 <= op.status < 500:
        return REFUSED
    return MAYBE


@dataclass(frozen=True)
class Effect:
    op: Op | None              # None: the state at setup
    path: str
    values: frozenset = frozenset()
    source: str = ""           # or: what `source` held during the request (MOVE, COPY)
    start: float = -INF
    until: float = -INF        # after this the effect can no longer happen
    outcome: str = ACK
    respell: str = ""          # a file moved or copied: the name it gets
    if_absent: bool = False    # happens only where nothing was (a LOCK's empty file)


@dataclass
class Observation:
    path: str
    lo: float
    hi: float
    value: str
    op: Op | None = None       # the read, if it was one of the run's requests
    where: str = ""            # "final", "fresh", ...


@dataclass
class Anomaly:
    kind: str
    path: str
    text: str
    history: list[str] = field(default_factory=list)

    def __str__(self) -> str:
        return f"{self.kind} {self.path or '/'}: {self.text}" + "".join("\n    " + h for h in self.history)


def name_of(path: str) -> str:
    return path.rpartition("/")[2]


def spelling(value: str) -> str | None:
    """The name a file value was written under (None for ABSENT, DIR, ANY and unspelled values)."""
    return value.split("\0", 1)[0] if "\0" in value else None


def content(value: str) -> str:
    return value.rsplit("\0", 1)[-1]


def short(value: str) -> str:
    c = content(value)
    c = c if c in (ABSENT, DIR, ANY) else c[:10]
    return f"{spelling(value)}:{c}" if spelling(value) is not None else c


class Checker:
    def __init__(self, ops: Iterable[Op], ns: Namespace = Namespace(),
                 restarts: Iterable[tuple[float, float]] = (), sizes: dict[str, int] | None = None) -> None:
        """`restarts`: (killed at, answering again at) for each kill of the server: a request cut by a
        kill can take effect no later than the restart. `sizes`: SHA-256 -> length of every body sent."""
        self.ns = ns
        self.ops = sorted(ops, key=lambda o: o.start)
        self.restarts = sorted(restarts)
        self.sizes = dict(sizes or {})
        self.sizes.setdefault(EMPTY, 0)
        self.t0 = min((o.start for o in self.ops), default=0.0)
        self.effects: dict[str, list[Effect]] = {k: [Effect(None, k, frozenset({ns.initial(k)}))]
                                                 for k in ns.file_keys + list(ns.folders)}
        for op in self.ops:
            for e in self._effects(op):
                self.effects[e.path].append(e)
        self.holds = self._holds()
        self.anomalies: list[Anomaly] = []
        self._memo: dict = {}

    # --- effects ----------------------------------------------------------------------------
    def _until(self, op: Op) -> float:
        if op.status is not None or op.refused:
            return op.end
        for killed, ready in self.restarts:     # cut by a kill: settled once the server is back
            if op.start <= killed <= op.end + 1.0:
                return max(op.end, ready)
        return INF                              # no answer and no kill to explain it: any time later

    def _effects(self, op: Op) -> list[Effect]:
        out = outcome(op)
        if out == REFUSED or op.kind in READS or op.kind == "UNLOCK":
            return []
        until = self._until(op)
        ns = self.ns

        def eff(path: str, values: Iterable[str] = (), source: str = "", respell: str = "") -> Effect:
            return Effect(op, path, frozenset(values), source, op.start, until, out, respell)

        key, spell = ns.key, ns.spell
        if op.kind == "PUT":
            return [eff(key(op.path), {spell(op.path, op.body)})]
        if op.kind == "MKCOL":     # a folder made anew is empty: any child there was went with the old one
            return [eff(op.path, {DIR})] + [eff(k, {ABSENT}) for k in ns.keys(op.path)]
        if op.kind == "LOCK":      # a LOCK of an unmapped URL makes an empty file (201)
            if op.status == 201:
                return [eff(key(op.path), {spell(op.path, EMPTY)})]
            # a LOCK that failed, or one granted (200) while another LOCK of the same missing file made
            # it: an empty file may have appeared, only where there was none (never one emptied)
            return [Effect(op, key(op.path), frozenset({spell(op.path, EMPTY)}), "", op.start, until, MAYBE,
                           if_absent=True)]
        if not ns.is_folder(op.path):
            if op.kind == "DELETE":
                return [eff(key(op.path), {ABSENT})]
            moved = [eff(key(op.path), {ABSENT})] if op.kind == "MOVE" else []
            return moved + [eff(key(op.dest), source=op.path, respell=name_of(op.dest))]
        pairs = list(zip(ns.keys(op.path), ns.keys(op.dest or op.path)))
        if op.kind == "DELETE":
            return [eff(op.path, {ABSENT})] + [eff(k, {ABSENT}) for k, _ in pairs]
        effects = [eff(op.path, {ABSENT})] + [eff(k, {ABSENT}) for k, _ in pairs] if op.kind == "MOVE" else []
        # a destination child the source lacks gets the source's ABSENT: the old folder is replaced
        return effects + [eff(op.dest, {DIR})] + [eff(d, source=k) for k, d in pairs]

    def _holds(self) -> list[tuple[Op, float, float]]:
        """(lock, from, to): a client holds an exclusive lock on lock.path from the LOCK's answer until
        it starts its UNLOCK."""
        holds = []
        for op in self.ops:
            if op.kind == "LOCK" and outcome(op) == ACK:
                unlock = next((u for u in self.ops if u.kind == "UNLOCK" and u.client == op.client
                               and u.path == op.path and u.start >= op.end), None)
                holds.append((op, op.end, unlock.start if unlock else INF))
        return holds

    def forbidden(self, e: Effect) -> Op | None:
        """The lock `e` breaks, if any: an effect of a request without the token, within a hold. With
        names compared case-insensitively, a lock on Readme.txt holds readme.txt too (one file)."""
        if e.op is None or e.op.token:
            return None
        for lock, lo, hi in self.holds:
            if self.ns.key(lock.path) == e.path and lock.client != e.op.client and lo < e.start and e.until < hi:
                return lock
        return None

    # --- candidates -------------------------------------------------------------------------
    def candidates(self, key: str, lo: float, hi: float, skip: Op | None = None, depth: int = 0) -> frozenset:
        """Every value a read of `key` over [lo, hi] may see (ANY when it cannot be bounded)."""
        memo = (key, lo, hi, skip.id if skip else None)
        if memo in self._memo:
            return self._memo[memo]
        if depth > 8:
            return frozenset({ANY})
        self._memo[memo] = frozenset({ANY})      # a cycle of moves is not bounded
        effects = [e for e in self.effects[key] if skip is None or e.op is not skip]
        acked = [e for e in effects if e.outcome == ACK]
        values: set[str] = set()
        for e in effects:
            if e.start >= hi or (e.outcome != ACK and self.forbidden(e)):
                continue
            if any(w is not e and e.until < w.start and w.until < lo for w in acked):
                continue
            if e.if_absent:
                there = self.candidates(key, e.start, e.until, skip=e.op, depth=depth + 1)
                if ABSENT not in there and ANY not in there:
                    continue
            values |= self._values(e, depth)
        result = frozenset(values)
        self._memo[memo] = result
        return result

    def _values(self, e: Effect, depth: int) -> frozenset:
        if not e.source:
            return e.values
        got = self.candidates(self.ns.key(e.source), e.start, e.until, skip=e.op, depth=depth + 1)
        if not e.respell or ANY in got:         # a folder's child keeps its own name
            return got
        # a file moved or copied (found under any spelling of its name) takes the destination's name
        moved = frozenset(self.ns.spell(e.respell, content(v)) for v in got if v != ABSENT)
        return moved or got

    def matches(self, path: str, value: str, got: frozenset) -> bool:
        """Whether a read of `path` that saw `value` (sha, ABSENT, DIR) is one of `got`. A read finds
        the file under any spelling of its name: only the listing shows which one it has."""
        if ANY in got:
            return True
        return value in {content(v) for v in got}

    # --- checks -----------------------------------------------------------------------------
    def history(self, *paths: str, until: float = INF, limit: int = 16) -> list[str]:
        """The requests that touched `paths` (and reads of them) up to `until`, the last `limit`."""
        keys = {self.ns.key(p) for p in paths}
        ops = [e.op for k in keys for e in self.effects.get(k, []) if e.op is not None]
        reads = [o for o in self.ops if o.kind in READS and self.ns.key(o.path) in keys and o.seen]
        locks = [o for o in self.ops if o.kind in ("LOCK", "UNLOCK") and self.ns.key(o.path) in keys]
        lines = sorted({o.id: o for o in ops + reads + locks}.values(), key=lambda o: o.start)
        lines = [o for o in lines if o.start <= until][-limit:]
        return [o.line(self.t0) for o in lines]

    def _add(self, kind: str, path: str, text: str, *paths: str, until: float = INF) -> None:
        self.anomalies.append(Anomaly(kind, path, text, self.history(path, *paths, until=until)))

    def check_ops(self) -> None:
        for key, effects in self.effects.items():
            for e in effects:
                lock = self.forbidden(e) if e.outcome == ACK else None
                if lock is not None:
                    self._add("lock", lock.path, f"request #{e.op.id} ({e.op.kind} {e.op.path}, {e.op.status}) "
                              f"changed it without the token while client {lock.client} held lock #{lock.id}",
                              e.op.path, until=e.op.end + 0.5)
        for op in self.ops:
            if op.kind in ("MOVE", "COPY") and not op.overwrite and outcome(op) == ACK:
                there = self.candidates(self.ns.key(op.dest), op.start, op.end, skip=op)
                if ANY not in there and ABSENT not in there:
                    self._add("overwrite", op.dest, f"#{op.id} {op.kind} {op.path} with Overwrite: F answered "
                              f"{op.status}, but the destination held {', '.join(sorted(map(short, there)))}",
                              op.path, until=op.end + 0.5)
        for lock, lo, hi in self.holds:
            for other in self.ops:
                if (other.kind == "LOCK" and self.ns.key(other.path) == self.ns.key(lock.path)
                        and other.client != lock.client and outcome(other) == ACK
                        and lo < other.start and other.end < hi):
                    self._add("lock", lock.path, f"lock #{other.id} of {other.path} granted while #{lock.id} was held",
                              other.path, until=other.end + 0.5)

    def check_observation(self, ob: Observation) -> None:
        got = self.candidates(self.ns.key(ob.path), ob.lo, ob.hi)
        if self.matches(ob.path, ob.value, got):
            return
        where = f"read #{ob.op.id}" if ob.op else ob.where
        expected = ", ".join(sorted(short(v) for v in got))
        if ob.value not in (ABSENT, DIR) and ob.value not in self.sizes:
            kind = "corrupt"
        elif ob.value == ABSENT:
            kind = "vanished"
        else:
            kind = "stale"
        self._add(kind, ob.path, f"{where} at {ob.lo - self.t0:.2f}..{ob.hi - self.t0:.2f} saw {short(ob.value)}; "
                  f"possible: {expected}", until=ob.hi + 0.5)

    def observations(self) -> list[Observation]:
        return [Observation(o.path, o.start, o.end, o.seen, o) for o in self.ops if o.kind in READS and o.seen]

    def check_final(self, state: dict[str, str], listings: dict[str, dict[str, int]], lo: float, hi: float,
                    where: str = "final") -> None:
        """`state`: path -> value for every path of the namespace, read after the run (quiet);
        `listings`: folder -> {name: size (-1 for a folder)} from PROPFIND Depth 1 of each folder there."""
        for path, value in state.items():
            self.check_observation(Observation(path, lo, hi, value, where=where))
        for folder, entries in listings.items():
            for name, size in entries.items():
                path = join(folder, name)
                if name not in self.ns.expected_entries(folder):
                    self._add("listing", path, f"{where}: listed but outside the namespace (size {size})")
                elif size >= 0 and state.get(path) not in (None, ABSENT) and self.sizes.get(state[path], size) != size:
                    self._add("listing", path, f"{where}: listed with size {size}, reads "
                              f"{self.sizes.get(state[path])} bytes")
                elif state.get(path) == ABSENT:
                    self._add("listing", path, f"{where}: listed but reads 404")
            listed = {self.ns.key(join(folder, n)) for n in entries}
            for name in self.ns.expected_entries(folder):
                path = join(folder, name)
                if state.get(path) not in (None, ABSENT) and self.ns.key(path) not in listed:
                    self._add("listing", path, f"{where}: reads {state[path][:10]} but is not listed")
            if self.ns.fold:
                for name in entries:
                    twins = sorted(n for n in entries if n != name and n.casefold() == name.casefold())
                    if twins and name < twins[0]:
                        self._add("listing", join(folder, name), f"{where}: listed beside {twins} (one file)")
        for path, value in state.items():
            if value != ABSENT and path and state.get(parent(path), DIR) == ABSENT:
                self._add("orphan", path, f"{where}: {value[:10]} in folder {parent(path)}, which reads 404")
        self._check_failed_moves(state)

    def _key_state(self, state: dict[str, str]) -> dict[str, str]:
        """key -> the spelled value found under one of its spellings, else ABSENT."""
        out: dict[str, str] = {}
        for path, value in state.items():
            k = self.ns.key(path)
            if value != ABSENT or k not in out:
                out[k] = self.ns.spell(path, value)
        return out

    def _check_failed_moves(self, state: dict[str, str]) -> None:
        """A MOVE that failed (no answer, 5xx, 207), of a file nothing else touched afterwards: the
        file is at one of the two paths, never both and never neither."""
        ns, keyed = self.ns, self._key_state(state)
        for op in self.ops:
            if op.kind != "MOVE" or outcome(op) != MAYBE:
                continue
            pairs = ([(ns.key(op.path), ns.key(op.dest))] if not ns.is_folder(op.path)
                     else list(zip(ns.keys(op.path), ns.keys(op.dest))))
            for src, dst in pairs:
                others = [e for k in (src, dst) for e in self.effects[k]
                          if e.op is not None and e.op is not op and e.until > op.start]
                if others:
                    continue
                moved = {content(v) for v in self.candidates(src, op.start, op.end, skip=op)} - {ABSENT}
                before = {content(v) for v in self.candidates(dst, op.start, op.start, skip=op)}
                had = self.candidates(src, op.start, op.start, skip=op)
                if not moved or ANY in moved | before | had:
                    continue
                s, d = content(keyed.get(src, ABSENT)), content(keyed.get(dst, ABSENT))
                if s == ABSENT and ABSENT not in had and d not in moved:
                    self._add("moved-half", op.path, f"MOVE #{op.id} ({op.status or op.error}) to {op.dest}: "
                              f"{src} is at neither path ({dst} holds {d[:10]})", op.dest)
                elif s in moved and d == s and d not in before:
                    self._add("moved-half", op.path, f"MOVE #{op.id} ({op.status or op.error}) to {op.dest}: "
                              f"{src} is at both paths", op.dest)

    def check_replicas(self, a: dict[str, str], b: dict[str, str], name_a: str, name_b: str,
                       list_a: dict | None = None, list_b: dict | None = None) -> None:
        """Two servers read the quiet tree: the same values, and the same listings."""
        for path in sorted(set(a) | set(b)):
            if a.get(path) != b.get(path):
                self._add("replicas", path, f"{name_a} reads {str(a.get(path))[:10]}, "
                          f"{name_b} reads {str(b.get(path))[:10]}")
        list_a, list_b = list_a or {}, list_b or {}
        for folder in sorted(set(list_a) | set(list_b)):
            if list_a.get(folder) != list_b.get(folder):
                self._add("replicas", folder, f"{name_a} lists {sorted((list_a.get(folder) or {}).items())}, "
                          f"{name_b} lists {sorted((list_b.get(folder) or {}).items())}")

    def run(self) -> list[Anomaly]:
        self.check_ops()
        for ob in self.observations():
            self.check_observation(ob)
        return self.anomalies
