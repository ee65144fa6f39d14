"""Helper accounts: reads spread over several accounts that are members of the same channels.

The main account lists the channels (catalog) and its file locations are what the reader asks for.
Without helpers the reader still reads through Accounts, an Accounts of one (tgdav.app builds every
account, the main one first, with the same code).
Each account has its own Telethon client, SenderFactory, Pool and FileFetcher; `Accounts.fetch` has
the reader's fetch signature and sends each part through the least loaded account that Telegram
has not asked to wait on the file's DC (FLOOD_WAIT on any of its senders there, FLOOD_PREMIUM_WAIT, or
a deadline another replica published): Telegram's flood limits are per account, so a flooded
account's other senders would meet the flood too. The pools of an account set hand a flooded
request back (RetryLater) instead of trying their other senders, and it is sent again through
another account. When every account is flooded there, a short wait (<= max_wait) is waited out, as
the pool does for one account; a longer one raises RetryLater, so the client is told when to come
back (503).

A location (file reference, channel access hash) belongs to the account that fetched it: a helper
resolves each file once with its own channels.getMessages and refreshes it the same way; a
reference of one account is never sent by another. DC authorisations are kept per account (the
store's AccountView); the file -> DC map is the same for every account and shared.
"""

from __future__ import annotations

import asyncio
import logging
from dataclasses import dataclass, field

from tgdav.telegram.mtproto import functions, types

from tgdav.config import BOT_TOKEN
from tgdav.errors import ConfigError, NotFound, RetryLater, UpstreamUnavailable
from tgdav.model import Location
from tgdav.telegram.catalog import entry_for
from tgdav.telegram.login import login
from tgdav.telegram import rpc

log = logging.getLogger("tgdav.accounts")


class Resolver:
    """One helper account's own locations of the main account's files (channels.getMessages)."""

    def __init__(self, client, name: str, *, is_bot: bool) -> None:
        self._client = client
        self._name = name
        self._is_bot = is_bot
        self._channels: dict[int, types.InputChannel] = {}
        self._locations: dict[str, Location] = {}
        self._locks: dict[str, asyncio.Lock] = {}
        self._dialogs_read = False

    async def location(self, loc: Location) -> Location:
        """This account's location of the file `loc` names (resolved once, then kept in memory)."""
        mine = self._locations.get(loc.file_key)
        if mine is not None:
            return mine
        async with self._locks.setdefault(loc.file_key, asyncio.Lock()):
            mine = self._locations.get(loc.file_key)
            if mine is None:
                mine = self._locations[loc.file_key] = await self._fetch(loc)
        return mine

    async def refresh(self, loc: Location) -> Location:
        """FILE_REFERENCE_EXPIRED for this account: fetch the message again (FileFetcher's refresh)."""
        fresh = self._locations[loc.file_key] = await self._fetch(loc)
        return fresh

    async def _fetch(self, loc: Location) -> Location:
        channel = await self._input_channel(loc.channel_id)
        result = await self._client(functions.channels.GetMessagesRequest(
            channel, [types.InputMessageID(loc.message_id)]))
        message = next((m for m in result.messages if isinstance(m, types.Message)), None)
        entry = entry_for(message, channel.channel_id, channel.access_hash) if message else None
        if entry is None or entry.location.id != loc.id:
            raise NotFound(f"{self._name}: message {loc.message_id} does not hold file {loc.file_key}")
        log.debug("%s: resolved file %s", self._name, loc.file_key)
        return entry.location

    async def _input_channel(self, channel_id: int) -> types.InputChannel:
        channel = self._channels.get(channel_id)
        if channel is not None:
            return channel
        if self._is_bot:     # bots that are members may name a channel with access_hash 0
            channel = types.InputChannel(channel_id, 0)
        else:
            try:
                peer = await self._client.get_input_entity(types.PeerChannel(channel_id))
            except ValueError:
                if self._dialogs_read:
                    raise NotFound(f"{self._name} is not a member of channel {channel_id}") from None
                self._dialogs_read = True
                await self._client.get_dialogs()          # fills Telethon's entity cache
                peer = await self._client.get_input_entity(types.PeerChannel(channel_id))
            channel = types.InputChannel(peer.channel_id, peer.access_hash)
        self._channels[channel_id] = channel
        return channel


@dataclass(eq=False)
class Account:
    name: str                  # for log lines: "main", "@helperbot", "session NAME"
    pool: object               # telegram.pool.Pool
    fetcher: object            # telegram.fetch.FileFetcher of this account
    resolver: Resolver | None  # None for the main account (its locations are the catalog's)
    parts: int = 0             # parts fetched through it (stats)
    rerouted: int = 0          # parts it handed back because Telegram asked it to wait
    extra: list = field(default_factory=list)   # what close() must close besides the pool

    async def location(self, loc: Location) -> Location:
        return loc if self.resolver is None else await self.resolver.location(loc)


class Accounts:
    """fetch(loc, offset, limit, urgent=, interactive=) over several accounts (see the module docstring)."""

    def __init__(self, accounts: list[Account], *, max_wait: float = 10.0) -> None:
        if not accounts:
            raise ValueError("at least the main account")
        self.accounts = accounts
        self._max_wait = max_wait
        self._dcs: dict[str, int] = {}      # file -> DC as the accounts' fetchers found it

    def part_limit(self, loc: Location) -> int:
        """The main account's part size for the file (FileFetcher.part_limit)."""
        return self.accounts[0].fetcher.part_limit(loc)

    def _dc(self, loc: Location) -> int:
        return self._dcs.get(loc.file_key) or loc.dc_id

    def _choose(self, dc: int) -> tuple[Account | None, float]:
        """The least loaded account not flooded on `dc` (None if every one is), and the shortest
        time until one is free again."""
        best, best_rank, soonest = None, None, float("inf")
        for i, a in enumerate(self.accounts):
            pool = a.pool.dc(dc)
            flooded = pool.flooded_for("GetFile")
            if flooded > 0:
                soonest = min(soonest, flooded)
                continue
            rank = (pool.load, i)
            if best_rank is None or rank < best_rank:
                best, best_rank = a, rank
        return best, soonest

    async def fetch(self, loc: Location, offset: int, limit: int, *, urgent: bool = False,
                    interactive: bool = False) -> bytes:
        if len(self.accounts) == 1:     # nothing to route around: its pool waits out or refuses floods
            account = self.accounts[0]
            data = await account.fetcher.fetch(loc, offset, limit, urgent=urgent, interactive=interactive)
            account.parts += 1
            return data
        dc = self._dc(loc)
        while True:
            account, soonest = self._choose(dc)
            if account is None:     # every account flooded here: wait out a short gate, else 503
                if soonest > self._max_wait:
                    raise RetryLater(soonest, f"Telegram asked every account to wait on DC {dc} "
                                              f"({soonest:.0f} s, FLOOD_WAIT); try again then")
                await asyncio.sleep(soonest)
                continue
            mine = await rpc.call(account.location, loc, f"{account.name}: resolving file {loc.file_key}")
            try:
                data = await account.fetcher.fetch(mine, offset, limit, urgent=urgent,
                                                   interactive=interactive)
            except RetryLater as e:
                if account.pool.dc(dc).flooded_for("GetFile") <= 0:
                    raise          # not a flood gate of this account on this DC: nothing to route around
                account.rerouted += 1
                log.info("%s is flooded on DC %d (%s); trying another account", account.name, dc, e)
                continue
            account.parts += 1
            known = account.fetcher.known_dc(loc.file_key)
            if known is not None:
                self._dcs[loc.file_key] = known
            return data

    def stats(self) -> dict:
        return {a.name: {"parts": a.parts, "rerouted": a.rerouted, "pool": a.pool.stats()}
                for a in self.accounts}

    async def close(self) -> None:
        for a in self.accounts:
            await a.pool.close()
            for closer in a.extra:
                await closer()


def helper_session(spec: str) -> str:
    """The session file name of a helper: its own for a bot token, the given name for a user."""
    return f"helper-bot-{spec.split(':', 1)[0]}" if BOT_TOKEN.fullmatch(spec) else spec


async def connect_helpers(specs, make_client) -> list[tuple[object, object]]:
    """connect_helper for every `[telegram] helpers` entry, in order: all of them, or none connected
    (one that fails disconnects those connected before it, then its error is raised)."""
    connected: list[tuple[object, object]] = []
    try:
        for spec in specs:
            connected.append(await connect_helper(spec, make_client))
    except BaseException:
        await disconnect_helpers(connected)
        raise
    return connected


async def disconnect_helpers(helpers) -> None:
    """Disconnect the clients of connect_helpers' (client, get_me()) pairs."""
    for client, _ in helpers:
        await client.disconnect()


async def connect_helper(spec: str, make_client) -> tuple[object, object]:
    """A connected, authorised client for one `[telegram] helpers` entry and its get_me().
    A bot token logs in by itself (once: the session is kept); a user session must have been made
    with `tgdav login --session NAME`. A helper Telegram cannot be reached for raises
    UpstreamUnavailable naming its session (never the bot token)."""
    session = helper_session(spec)
    client = make_client(session)
    try:
        try:
            await client.connect()
        except (ConnectionError, OSError, asyncio.IncompleteReadError) as e:
            raise UpstreamUnavailable(f"cannot reach Telegram for the helper account of session "
                                      f"{session!r}: {e or type(e).__name__}") from None
        if not await client.is_user_authorized():
            if not BOT_TOKEN.fullmatch(spec):
                raise ConfigError(f"helper session {spec!r} is not logged in — run "
                                  f"`tgdav login --session {spec}` first")
            await login(client, bot_token=spec, phone=None, ask=_never_ask)
        return client, await client.get_me()
    except BaseException:
        await client.disconnect()
        raise


def _never_ask(prompt: str, secret: bool) -> str:
    raise ConfigError("a helper bot cannot answer questions")
