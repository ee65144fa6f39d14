"""The write-history checker on hand-made histories: each kind of anomaly is found, and the orders
that concurrency, failures and kills allow are not called anomalies."""

from __future__ import annotations

import itertools

from tests.write.history import (ABSENT, DIR, EMPTY, Checker, Namespace, Op, Step, body, plan)

NS = Namespace()
A, B = "d0/a.bin", "d1/a.bin"
_ids = itertools.count(1)


def op(kind, path, start, end, status, client=0, **kw) -> Op:
    return Op(next(_ids), client, kind, path, start=start, end=end, status=status, **kw)


def put(path, value, start, end, status=201, **kw) -> Op:
    return op("PUT", path, start, end, status, body=value, **kw)


def get(path, start, end, seen, client=9) -> Op:
    return op("GET", path, start, end, 200 if seen != ABSENT else 404, client=client, seen=seen)


def kinds(ops, **kw) -> list[str]:
    sizes = {o.body: 1 for o in ops if o.kind == "PUT"}
    return [a.kind for a in Checker(ops, NS, sizes=sizes, **kw).run()]


def test_an_acknowledged_write_is_read_until_a_later_one():
    assert kinds([put(A, "v1", 0, 1), get(A, 2, 3, "v1"), put(A, "v2", 4, 5, 204), get(A, 6, 7, "v2")]) == []
    assert kinds([put(A, "v1", 0, 1), put(A, "v2", 4, 5, 204), get(A, 6, 7, "v1")]) == ["stale"]
    assert kinds([put(A, "v1", 0, 1), get(A, 2, 3, ABSENT)]) == ["vanished"]


def test_a_read_overlapping_a_write_may_see_either():
    assert kinds([put(A, "v1", 0, 1), put(A, "v2", 2, 5), get(A, 3, 4, "v1"), get(A, 3, 4, "v2")]) == []


def test_concurrent_writers_leave_one_of_their_bodies_never_none():
    ops = [put(A, f"v{i}", 0 + i * 0.1, 3 + i * 0.1, client=i) for i in range(4)]
    assert kinds(ops + [get(A, 5, 6, "v2")]) == []
    assert kinds(ops + [get(A, 5, 6, ABSENT)]) == ["vanished"]


def test_bytes_nobody_sent_are_corrupt():
    assert kinds([put(A, "v1", 0, 1), get(A, 2, 3, "half of v1")]) == ["corrupt"]


def test_failed_and_refused_writes():
    # a 503 may or may not have happened; a 4xx did not
    assert kinds([put(A, "v1", 0, 1), put(A, "v2", 2, 3, 503), get(A, 4, 5, "v2"), get(A, 6, 7, "v1")]) == []
    assert kinds([put(A, "v1", 0, 1), put(A, "v2", 2, 3, 409), get(A, 4, 5, "v2")]) == ["stale"]
    # a connection refused sent nothing
    assert kinds([put(A, "v1", 0, 1), op("PUT", A, 2, 3, None, body="v2", refused=True), get(A, 4, 5, "v2")]) \
        == ["stale"]


def test_a_request_cut_by_a_kill_settles_when_the_server_is_back():
    cut = op("PUT", A, 2, 3, None, body="v2", error="reset")
    later = put(A, "v3", 10, 11, 204)
    assert kinds([put(A, "v1", 0, 1), cut, get(A, 6, 7, "v2")], restarts=[(2.5, 5)]) == []
    assert kinds([put(A, "v1", 0, 1), cut, get(A, 6, 7, "v1")], restarts=[(2.5, 5)]) == []
    assert kinds([put(A, "v1", 0, 1), cut, later, get(A, 12, 13, "v2")], restarts=[(2.5, 5)]) == ["stale"]
    # no kill explains the missing answer: it may land at any time
    assert kinds([put(A, "v1", 0, 1), cut, later, get(A, 12, 13, "v2")]) == []


def test_move_carries_the_value_and_empties_the_source():
    ops = [put(A, "v1", 0, 1), op("MOVE", A, 2, 3, 201, dest=B)]
    assert kinds(ops + [get(B, 4, 5, "v1"), get(A, 4, 5, ABSENT)]) == []
    assert kinds(ops + [get(B, 4, 5, ABSENT)]) == ["vanished"]
    assert kinds(ops + [get(A, 4, 5, "v1")]) == ["stale"]


def test_a_failed_move_leaves_the_file_at_one_path():
    ops = [put(A, "v1", 0, 1), op("MOVE", A, 2, 3, 503, dest=B)]
    checker = Checker(ops, NS, sizes={"v1": 1})
    checker.run()
    state = {p: ABSENT for p in NS.files} | {f: DIR for f in NS.folders[:3]} | {"d2": ABSENT, "d3": ABSENT}
    checker.check_final(state | {A: "v1"}, {}, 5, 6)
    checker.check_final(state | {B: "v1"}, {}, 5, 6)
    assert checker.anomalies == []
    checker.check_final(state, {}, 5, 6)
    assert [a.kind for a in checker.anomalies] == ["moved-half"]     # each path alone is possible
    checker.anomalies.clear()
    checker.check_final(state | {A: "v1", B: "v1"}, {}, 5, 6)
    assert [a.kind for a in checker.anomalies] == ["moved-half"]


def test_folder_operations_reach_every_child():
    c2, c3 = "d2/a.bin", "d3/a.bin"
    ops = [op("MKCOL", "d2", 0, 1, 201), put(c2, "v1", 2, 3), op("MOVE", "d2", 4, 5, 201, dest="d3")]
    assert kinds(ops + [get(c3, 6, 7, "v1"), get(c2, 6, 7, ABSENT)]) == []
    assert kinds(ops + [get(c3, 6, 7, ABSENT)]) == ["vanished"]
    deleted = ops + [op("DELETE", "d3", 8, 9, 204)]
    assert kinds(deleted + [get(c3, 10, 11, ABSENT)]) == []
    assert kinds(deleted + [get(c3, 10, 11, "v1")]) == ["stale"]
    # a folder made again is empty, whatever a DELETE that failed left there
    remade = ops + [op("DELETE", "d3", 8, 9, 207), op("MKCOL", "d3", 10, 11, 201)]
    assert kinds(remade + [get(c3, 12, 13, ABSENT)]) == []
    assert kinds(remade + [get(c3, 12, 13, "v1")]) == ["stale"]
    copied = [op("MKCOL", "d2", 0, 1, 201), put(c2, "v1", 2, 3), op("COPY", "d2", 4, 5, 201, dest="d3")]
    assert kinds(copied + [get(c3, 6, 7, "v1"), get(c2, 6, 7, "v1")]) == []


def test_a_locked_path_changes_only_with_its_token():
    lock = op("LOCK", A, 2, 3, 200, client=1)
    unlock = op("UNLOCK", A, 10, 11, 204, client=1)
    base = [put(A, "v1", 0, 1), lock, unlock]
    assert kinds(base + [put(A, "v2", 4, 5, 201, client=1, token=True), get(A, 6, 7, "v2")]) == []
    assert kinds(base + [put(A, "v2", 4, 5, 423, client=2), get(A, 6, 7, "v1")]) == []
    assert kinds(base + [put(A, "v2", 4, 5, 204, client=2)]) == ["lock"]
    assert kinds(base + [put(A, "v2", 4, 5, 503, client=2), get(A, 6, 7, "v2")]) == ["stale"]
    # through a parent: DELETE of the folder
    assert kinds(base + [op("DELETE", "d0", 4, 5, 204, client=2)]) == ["lock"]
    assert kinds(base + [op("DELETE", "d0", 4, 5, 207, client=2), get(A, 6, 7, ABSENT)]) == ["vanished"]
    # a write that began before the lock was granted may land before it
    assert kinds(base + [put(A, "v2", 1.5, 5, 204, client=2)]) == []
    assert kinds(base + [op("LOCK", A, 4, 5, 200, client=2)]) == ["lock"]


def test_a_lock_of_a_missing_file_makes_it_empty():
    assert kinds([op("LOCK", A, 0, 1, 201), get(A, 2, 3, EMPTY)]) == []
    assert kinds([op("LOCK", A, 0, 1, 201), get(A, 2, 3, ABSENT)]) == ["vanished"]
    # two LOCKs of the missing file at once: the one granted may say 200 (the other made the file)
    race = [op("LOCK", A, 0, 1, 200, client=1), op("LOCK", A, 0, 1, 423, client=2)]
    assert kinds(race + [get(A, 2, 3, EMPTY)]) == []
    # but no LOCK empties a file that is there, and a refused one alone makes nothing
    assert kinds([put(A, "v1", 0, 1), op("LOCK", A, 2, 3, 200), get(A, 4, 5, EMPTY)]) == ["stale"]
    assert kinds([put(A, "v1", 0, 1), op("LOCK", A, 2, 3, 503), get(A, 4, 5, EMPTY)]) == ["stale"]
    assert kinds([op("LOCK", A, 0, 1, 423), get(A, 2, 3, EMPTY)]) == ["stale"]


def test_final_listings_orphans_and_replicas():
    checker = Checker([op("MKCOL", "d2", 0, 1, 201), put("d2/a.bin", "v1", 2, 3)], NS, sizes={"v1": 5})
    state = {p: ABSENT for p in NS.files} | {f: DIR for f in NS.folders[:3]} | {"d2": DIR, "d3": ABSENT}
    state["d2/a.bin"] = "v1"
    checker.check_final(state, {"d2": {"a.bin": 5}, "": {"d0": -1, "d1": -1, "d2": -1}}, 4, 5)
    assert checker.anomalies == []
    checker.check_final(state, {"d2": {"a.bin": 5, "a (2).bin": 5}}, 4, 5)
    checker.check_final(state, {"d2": {"a.bin": 4}}, 4, 5)
    checker.check_final(state, {"d2": {}}, 4, 5)
    assert [a.kind for a in checker.anomalies] == ["listing"] * 3
    checker.anomalies.clear()
    checker.check_final(state | {"d2": ABSENT}, {}, 4, 5)
    assert sorted(a.kind for a in checker.anomalies) == ["orphan", "vanished"]
    checker.anomalies.clear()
    checker.check_replicas(state, state | {"d2/a.bin": ABSENT}, "restarted", "fresh")
    assert [a.kind for a in checker.anomalies] == ["replicas"]
    checker.anomalies.clear()
    checker.check_replicas(state, state, "restarted", "fresh", {"d2": {"a.bin": 5}}, {"d2": {"a.bin": 5, "b": 1}})
    assert [a.kind for a in checker.anomalies] == ["replicas"]


def test_the_plan_is_seeded_and_shared_out():
    one, two = plan(7, 4, 200), plan(7, 4, 200)
    assert one == two and plan(8, 4, 200) != one
    assert [len(c) for c in one] == [50] * 4
    steps = [s for c in one for s in c]
    assert {s.kind for s in steps} == {"PUT", "GET", "PROPFIND", "MOVE", "COPY", "DELETE", "MKCOL", "LOCKED"}
    assert all(s.path != s.dest for s in steps)
    assert not any(s.size > 800_000 for s in plan(7, 4, 200, big=False)[0])
    puts = [s for s in steps if s.kind == "PUT"]
    assert len({body(s.seed, s.size) for s in puts if s.size}) == len([s for s in puts if s.size])
    assert isinstance(one[0][0], Step)


def test_names_differing_in_case_are_one_file():
    up, low = "d0/Readme.txt", "d0/readme.txt"
    ops = [put(up, "v1", 0, 1), put(low, "v2", 2, 3, 204)]
    assert kinds(ops + [get(low, 4, 5, "v2"), get(up, 4, 5, "v2")]) == []     # found under either name
    assert kinds(ops + [get(up, 4, 5, "v1")]) == ["stale"]
    assert kinds(ops + [get(up, 4, 5, ABSENT)]) == ["vanished"]
    # a lock on one spelling holds the other
    lock, unlock = op("LOCK", up, 2, 3, 200, client=1), op("UNLOCK", up, 10, 11, 204, client=1)
    assert kinds([put(up, "v1", 0, 1), lock, unlock, put(low, "v2", 4, 5, 201, client=2)]) == ["lock"]
    # a moved file takes the destination's spelling; a second spelling is listed at most once
    moved = [put(A, "v1", 0, 1), put(low, "v0", 0, 1), op("MOVE", A, 2, 3, 204, dest=up)]
    assert kinds(moved + [get(up, 4, 5, "v1"), get(low, 4, 5, "v1")]) == []
    assert kinds(moved + [get(low, 4, 5, "v0")]) == ["stale"]
    checker = Checker(ops, NS, sizes={"v1": 1, "v2": 1})
    state = {p: ABSENT for p in NS.files} | {f: DIR for f in NS.folders[:3]} | {"d2": ABSENT, "d3": ABSENT}
    state |= {up: "v2", low: "v2"}
    checker.check_final(state, {"d0": {"readme.txt": 1}}, 4, 5)
    assert checker.anomalies == []
    checker.check_final(state, {"d0": {"Readme.txt": 1, "readme.txt": 1}}, 4, 5)
    checker.check_final(state, {"d0": {}}, 4, 5)
    assert [a.kind for a in checker.anomalies] == ["listing", "listing", "listing"]


def test_without_folding_case_variants_are_two_files():
    ns = Namespace(fold=False)
    up, low = "d0/Readme.txt", "d0/readme.txt"
    ops = [put(up, "v1", 0, 1), put(low, "v2", 2, 3), get(up, 4, 5, "v1"), get(low, 4, 5, "v2")]
    assert Checker(ops, ns, sizes={"v1": 1, "v2": 1}).run() == []


def test_overwrite_f_onto_an_existing_destination_must_be_refused():
    up, low = "d0/Readme.txt", "d0/readme.txt"
    base = [put(A, "v1", 0, 1), put(low, "v2", 0, 1)]
    assert kinds(base + [op("MOVE", A, 2, 3, 412, dest=up, overwrite=False)]) == []
    assert kinds(base + [op("MOVE", A, 2, 3, 201, dest=up, overwrite=False)]) == ["overwrite"]
    assert kinds(base + [op("COPY", A, 2, 3, 201, dest=low, overwrite=False)]) == ["overwrite"]
    # a destination that may be gone by then: no anomaly
    assert kinds(base + [op("DELETE", low, 1.5, 2.5, 204, client=3),
                         op("MOVE", A, 2, 3, 201, dest=up, overwrite=False)]) == []
