"""The upload part store on its own: parts survive a restart of the store, live on the DC they were
sent to, and expire after their TTL of the injected clock."""

from __future__ import annotations

import pytest

from tests.sandbox.conftest import FakeClock
from tgdav.sandbox.context import RpcError
from tgdav.sandbox.controls import Controls
from tgdav.sandbox.parts import PartStore, valid_part_size

KIB = 1024


def missing(store: PartStore, dc: int, file_id: int, parts: int) -> str:
    with pytest.raises(RpcError) as e:
        store.complete(1, dc, file_id, parts, big=False, max_parts=4000)
    return e.value.message


def test_part_sizes_telegram_accepts():
    assert [s for s in range(0, 600 * KIB + 1, KIB) if valid_part_size(s)] == [
        1 * KIB, 2 * KIB, 4 * KIB, 8 * KIB, 16 * KIB, 32 * KIB, 64 * KIB, 128 * KIB, 256 * KIB, 512 * KIB]


def test_parts_survive_a_restart_and_stay_on_their_dc(tmp_path):
    clock, controls = FakeClock(), Controls()
    store = PartStore(tmp_path, controls, clock)
    for i in range(3):
        store.save(1, 2, 0xFEDCBA9876543210, i, bytes([i]) * KIB, max_parts=4000, total=3)
    store.save(1, 4, 55, 0, b"x" * KIB, max_parts=4000)
    again = PartStore(tmp_path, controls, clock)
    done = again.complete(1, 2, 0xFEDCBA9876543210, 3, big=True, max_parts=4000)
    assert (done.parts, done.part_size, done.size) == (3, KIB, 3 * KIB)
    assert missing(again, 2, 55, 1) == "FILE_PART_0_MISSING"          # sent to DC 4, used on DC 2
    assert again.complete(1, 4, 55, 1, big=False, max_parts=4000).size == KIB
    assert again.pending() == 2


def test_parts_expire_after_their_ttl_or_at_once_on_request(tmp_path):
    clock, controls = FakeClock(), Controls()
    store = PartStore(tmp_path, controls, clock)
    store.save(1, 2, 7, 0, b"a" * KIB, max_parts=4000)
    clock.advance(3600)
    store.save(1, 2, 8, 0, b"b" * KIB, max_parts=4000)
    controls.apply_faults({"upload_part_ttl": 1800}, now=clock())
    assert missing(store, 2, 7, 1) == "FILE_PART_0_MISSING"           # untouched for an hour: gone
    assert store.complete(1, 2, 8, 1, big=False, max_parts=4000).size == KIB
    controls.apply_faults({"expire_upload_parts": True}, now=clock())
    assert store.pending() == 0 and not any((tmp_path / "uploads").glob("*/*/*"))
    clock.advance(1)
    store.save(1, 2, 9, 0, b"c" * KIB, max_parts=4000)                # new uploads work again
    assert store.pending() == 1
