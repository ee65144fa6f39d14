"""The world model, the folder seed and the demo world: deterministic ids, fast building, lookups,
stale DCs, and content that is exactly the bytes it claims (files, patterns, real media)."""

from __future__ import annotations

import hashlib
import io
import os
import subprocess
import time
import wave

import pytest

from tgdav.sandbox.content import pattern
from tgdav.sandbox.demo import MEDIA, build_demo_world
from tgdav.sandbox.seed import (BOT_USERNAME, USER_PHONE, SyntheticFile, build_world_from_folder,
                                parse_size)
from tgdav.sandbox.world import BytesSource, FileSource, PatternSource, Photo, World


def snapshot(world: World) -> list:
    """Everything a client could cache: ids, hashes, tokens, DCs."""
    return ([(a.id, a.access_hash, a.bot_token) for a in world.accounts.values()]
            + [(c.id, c.access_hash) for c in world.channels.values()]
            + [(d.id, d.access_hash, d.dc_id, d.true_dc) for d in world.documents.values()]
            + [world.login_code])


def build(seed: int) -> World:
    w = World(seed=seed)
    user = w.add_user("+1 555 123", "A")
    w.add_bot("B", "b_bot")
    ch = w.add_channel("Films", members=[user])
    for i in range(20):
        w.add_document(ch, name=f"{i}.bin", size=i * 1000, mime="application/octet-stream")
    return w


def test_same_seed_same_world_and_another_seed_another():
    assert snapshot(build(1)) == snapshot(build(1))
    a, b = snapshot(build(1)), snapshot(build(2))
    assert not set(map(str, a)) & set(map(str, b))


def test_ten_thousand_messages_build_fast_and_look_up_by_bisection():
    w = World()
    ch = w.add_channel("Big")
    started = time.perf_counter()
    for i in range(10_000):
        w.add_document(ch, name=f"{i}.bin", size=4096, mime="application/octet-stream",
                       date=1_700_000_000 + i // 7)
    print(f"\n10,000 document messages built in {time.perf_counter() - started:.3f} s")
    assert len(ch.messages) == 10_000 and len(w.documents) == 10_000
    assert ch.message(1).id == 1 and ch.message(10_000).id == 10_000 and ch.message(10_001) is None
    assert ch.count_from_id(9_991) == 10 and ch.count_from_id(1) == 10_000
    assert ch.count_from_date(1_700_000_000 + 1428) == 10_000 - 1428 * 7


def test_building_rejects_bad_input():
    w = World(dc_ids=(1, 2))
    w.add_user("100", "A", username="taken_name")
    ch = w.add_channel("C")
    w.add_text(ch, "x", date=2_000_000_000)
    with pytest.raises(ValueError, match="date order"):
        w.add_text(ch, "y", date=1_000_000_000)
    with pytest.raises(ValueError, match="already taken"):
        w.add_user("+100", "Again")
    with pytest.raises(ValueError, match="already taken"):
        w.add_channel("D", username="Taken_Name")
    with pytest.raises(ValueError, match="not one of"):
        w.add_document(ch, name="a", size=1, mime="x", dc=3)
    with pytest.raises(ValueError, match="phone"):
        w.add_user("no digits", "B")
    with pytest.raises(ValueError):
        World(dc_ids=())


def test_lookups_and_dialog_order():
    w = World()
    user = w.add_user("+44 20 7946 0000", "U", username="Someone")
    bot = w.add_bot("Bot", "helper_bot")
    old = w.add_channel("Old", members=[user], date=1_600_000_000)
    new = w.add_channel("New", members=[user, bot], username="newchan", date=1_600_000_000)
    w.add_text(new, "x", date=1_650_000_000)
    assert w.account_by_phone("442079460000") is user and w.account_by_token(bot.bot_token) is bot
    assert w.by_username("someone") is user and w.by_username("NEWCHAN") is new
    assert bot.bot_token.startswith(f"{bot.id}:") and bot.is_bot and not user.is_bot
    assert w.dialogs_of(user) == [new, old] and w.dialogs_of(bot) == [new]
    assert w.users() == [user] and w.bots() == [bot]


def test_stale_dc_moves_bytes_but_not_the_advertised_dc():
    w = World(seed=4)
    ch = w.add_channel("C")
    doc = w.add_document(ch, name="a", size=10, mime="x", dc=3).media
    moved = w.make_stale(doc)
    assert doc.dc_id == 3 and doc.true_dc == moved != 3
    assert w.make_stale(doc, 1) == 1 and doc.true_dc == 1


def test_sources_read_exact_bytes(tmp_path):
    data = os.urandom(10_000)
    (tmp_path / "f").write_bytes(data)
    assert FileSource(tmp_path / "f").read(4096, 8192) == data[4096:]
    assert PatternSource(9).read(5000, 3000) == pattern(9, 5000, 3000)
    assert BytesSource(b"abcdef").read(2, 3) == b"cde"


def test_world_from_folder(tmp_path):
    films, music = tmp_path / "Films", tmp_path / "Music"
    films.mkdir(), music.mkdir(), (tmp_path / ".hidden").mkdir()
    contents = {}
    for i, name in enumerate(["b.mkv", "a.mp4", "notes.txt", ".DS_Store", "x.unknownext"]):
        contents[name] = os.urandom(1000 + i)
        (films / name).write_bytes(contents[name])
        os.utime(films / name, (1_650_000_000 + 100 * i, 1_650_000_000 + 100 * i))
    (music / "song.flac").write_bytes(b"fLaC" * 10)
    w = build_world_from_folder(tmp_path, seed=3, password="pw",
                                synthetic=(SyntheticFile.parse("Films/huge.bin:8GiB"),
                                           SyntheticFile.parse("Backups/disk.img:100M")))
    assert sorted(c.title for c in w.channels.values()) == ["Backups", "Films", "Music"]
    user = w.account_by_phone(USER_PHONE)
    assert user.password == "pw" and w.by_username(BOT_USERNAME).is_bot
    assert all(user.id in c.members for c in w.channels.values())
    ch = next(c for c in w.channels.values() if c.title == "Films")
    docs = [m.media for m in ch.messages]
    assert [d.name for d in docs] == ["b.mkv", "a.mp4", "notes.txt", "x.unknownext", "huge.bin"]
    assert [d.mime for d in docs[:4]] == ["video/x-matroska", "video/mp4", "text/plain", "application/octet-stream"]
    assert [m.date for m in ch.messages[:4]] == [1_650_000_000, 1_650_000_100, 1_650_000_200, 1_650_000_400]
    for d in docs[:4]:
        assert d.size == len(contents[d.name])
        assert hashlib.sha256(d.source.read(0, d.size)).digest() == hashlib.sha256(contents[d.name]).digest()
    assert docs[4].size == 8 << 30 and docs[4].source.read(1 << 32, 4096) == pattern(docs[4].id, 1 << 32, 4096)
    on_disk = [d for d in w.documents.values() if isinstance(d.source, FileSource)]
    assert len({d.dc_id for d in on_disk}) == 5 and on_disk[0].dc_id != user.home_dc
    assert snapshot(w) == snapshot(build_world_from_folder(tmp_path, seed=3, password="pw", synthetic=(
        SyntheticFile.parse("Films/huge.bin:8GiB"), SyntheticFile.parse("Backups/disk.img:100M"))))


@pytest.mark.parametrize("text,size", [("4096", 4096), ("100M", 100 << 20), ("8GiB", 8 << 30), ("2kb", 2048)])
def test_parse_size(text, size):
    assert parse_size(text) == size


@pytest.mark.parametrize("spec", ["nochannel.bin:1M", "Films/a.bin", "Films/a.bin:lots", "/a.bin:1M"])
def test_bad_synthetic_specs_are_refused(spec):
    with pytest.raises(ValueError):
        SyntheticFile.parse(spec)


def test_world_from_a_missing_folder_is_refused(tmp_path):
    with pytest.raises(ValueError, match="not a folder"):
        build_world_from_folder(tmp_path / "nope")


@pytest.fixture(scope="module")
def demo():
    return build_demo_world(password="demo")


def test_demo_world_has_every_kind_of_file(demo):
    titles = {c.title for c in demo.channels.values()}
    assert {"Welcome", "Pictures", "Music", "Videos", "Archive"} <= titles
    docs = {d.name: d for d in demo.documents.values()}
    assert docs["big.bin"].size == 8 << 30
    assert docs["clip.mp4"].video.supports_streaming and docs["c-major.wav"].audio.title == "C major"
    assert any(d.dc_id != d.true_dc for d in docs.values())
    assert {d.true_dc for d in docs.values()} == set(demo.dc_ids)
    assert any(isinstance(m.media, Photo) and len(m.media.sizes) == 2
               for c in demo.channels.values() for m in c.messages)
    user, bot = demo.users()[0], demo.bots()[0]
    assert user.password == "demo" and all({user.id, bot.id} <= c.members for c in demo.channels.values())


def test_demo_wav_is_a_real_wav(demo):
    wav = next(d for d in demo.documents.values() if d.name == "c-major.wav")
    with wave.open(io.BytesIO(wav.source.read(0, wav.size))) as w:
        assert (w.getnchannels(), w.getsampwidth()) == (1, 2)
        assert round(w.getnframes() / w.getframerate()) == wav.audio.duration


def ffprobe(path, *args: str) -> str:
    return subprocess.run(["ffprobe", "-v", "error", *args, "-of", "csv=p=0", str(path)],
                          check=True, capture_output=True, text=True, timeout=60).stdout


def test_demo_video_is_readable_seekable_and_as_advertised(demo):
    clip = next(d for d in demo.documents.values() if d.name == "clip.mp4")
    assert clip.size <= 500_000
    streams = ffprobe(MEDIA / "clip.mp4", "-show_entries", "stream=codec_name,width,height").split()
    assert streams[0] == "h264,320,240" and streams[1] == "aac"
    duration = float(ffprobe(MEDIA / "clip.mp4", "-show_entries", "format=duration"))
    assert abs(duration - clip.video.duration) < 0.1
    keyframes = ffprobe(MEDIA / "clip.mp4", "-select_streams", "v", "-skip_frame", "nokey",
                        "-show_entries", "frame=pts_time").split()
    assert [round(float(k.split(",")[0])) for k in keyframes] == list(range(int(clip.video.duration)))
    head = clip.source.read(0, 64)
    ftyp_size = int.from_bytes(head[:4], "big")
    assert head[4:8] == b"ftyp" and head[ftyp_size + 4:ftyp_size + 8] == b"moov"    # faststart: moov first


def test_demo_images_are_what_the_photos_claim(demo):
    photo = next(m.media for c in demo.channels.values() for m in c.messages
                 if isinstance(m.media, Photo) and len(m.media.sizes) == 2)
    for size in photo.sizes:
        path = size.source.path
        assert path.stat().st_size == size.size
        assert ffprobe(path, "-show_entries", "stream=width,height").strip() == f"{size.w},{size.h}"


@pytest.mark.parametrize("dc_ids", [(1,), (1, 3)])
def test_demo_world_fits_any_set_of_dcs(dc_ids):
    w = build_demo_world(dc_ids=dc_ids, big_size=1 << 20)
    assert w.users()[0].home_dc == dc_ids[0]
    assert {d.true_dc for d in w.documents.values()} == set(dc_ids)


def test_seeded_world_makes_only_the_writable_channels_postable(tmp_path):
    (tmp_path / "Films").mkdir()
    (tmp_path / "Films" / "a.bin").write_bytes(b"x" * 10)
    (tmp_path / "Inbox").mkdir()
    w = build_world_from_folder(tmp_path, writable=("Inbox", "New"))
    user, bot = w.users()[0], w.bots()[0]
    by_title = {c.title: c for c in w.channels.values()}
    assert {t for t, c in by_title.items() if c.may_post(user)} == {"Inbox", "New"}
    assert by_title["Inbox"].creator_id == user.id and by_title["New"].may_delete(bot)
    assert not by_title["Films"].may_post(bot) and by_title["Films"].readable_by(user)


def test_deleted_message_ids_are_never_given_again():
    w = World()
    ch = w.add_channel("C")
    for i in range(3):
        w.add_text(ch, f"m{i}")
    pts = ch.pts
    assert w.delete(ch, [3, 99]) == [3] and ch.pts == pts + 1
    assert w.post(ch, "new", None, 0).id == 4 and ch.pts == pts + 2
    with pytest.raises(ValueError):
        w.post(ch, "again", None, 0, message_id=4)
