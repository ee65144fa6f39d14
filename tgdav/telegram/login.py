"""The account's Telethon client: where its session lives, how it reaches Telegram (or a sandbox), and
logging in. Pointing a client at a sandbox touches Telethon's internals (the RSA key table and the
class-level config cache): mtproto.point_at_sandbox does it.

Sessions live in the state dir (sessions/<name>.session, owner-only), never in an image.
"""

from __future__ import annotations

import json
import logging
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Awaitable, Callable

from tgdav.errors import ConfigError
from tgdav.telegram.mtproto import Client, TelegramClient, errors, point_at_sandbox

log = logging.getLogger("tgdav.login")

FIRST_DC = 2        # where Telethon begins a new session (its DEFAULT_DC_ID)


@dataclass(frozen=True)
class SandboxInfo:
    """The JSON line `tgdav sandbox` prints: where its DCs listen and which key signs them."""
    dcs: dict[int, tuple[str, int]]
    home_dc: int
    rsa_public_key: str
    api_id: int
    api_hash: str
    raw: dict

    @classmethod
    def from_json(cls, text: str) -> "SandboxInfo":
        try:
            d = json.loads(text)
            return cls({int(k): (v[0], int(v[1])) for k, v in d["dcs"].items()}, int(d["home_dc"]),
                       d["rsa_public_key"], int(d["api_id"]), d["api_hash"], d)
        except (ValueError, KeyError, TypeError, IndexError) as e:
            raise ConfigError(f"the sandbox description is not the JSON line `tgdav sandbox` prints "
                              f"({e!r}) — start `tgdav sandbox` and save its first line") from None

    @classmethod
    def load(cls, path: str | Path) -> "SandboxInfo":
        try:
            return cls.from_json(Path(path).expanduser().read_text().strip().splitlines()[0])
        except (OSError, IndexError) as e:
            raise ConfigError(f"cannot read the sandbox description {path}: {e} — check "
                              "[telegram] sandbox / TGDAV_SANDBOX") from None


def session_path(state_dir: Path, name: str) -> Path:
    folder = Path(state_dir) / "sessions"
    folder.mkdir(parents=True, exist_ok=True, mode=0o700)
    os.chmod(folder, 0o700)
    return folder / name


def make_client(state_dir: Path, session: str, api_id: int, api_hash: str,
                sandbox: SandboxInfo | None = None, answer_timeout: float | None = None) -> TelegramClient:
    """A TelegramClient (not connected) with its session in the state dir. A request Telethon
    retried until it gave up (500s, -503 Timeout) raises Telegram's last error rather than a bare
    ValueError, so telegram/rpc.py's table maps it (503). answer_timeout: seconds any request may
    wait for its answer, a lost connection included (mtproto.Client), then TimeoutError (503)."""
    path = session_path(state_dir, session)
    if sandbox is not None:
        point_at_sandbox(sandbox.rsa_public_key)
        api_id, api_hash = sandbox.api_id, sandbox.api_hash
    if not api_id or not api_hash:
        raise ConfigError("no Telegram API credentials — set [telegram] api_id and api_hash "
                          "(from my.telegram.org) or TGDAV_API_ID / TGDAV_API_HASH")
    client = Client(str(path), api_id, api_hash, flood_sleep_threshold=0, receive_updates=False,
                    raise_last_call_error=True, answer_timeout=answer_timeout)
    session_file = Path(str(path) + ".session")
    if session_file.exists():
        os.chmod(session_file, 0o600)
    if sandbox is not None:
        # a new session starts where Telethon starts one with Telegram (DC 2) and is sent home by
        # PHONE_MIGRATE / USER_MIGRATE, as an account on any DC is
        dc = client.session.dc_id if client.session.dc_id in sandbox.dcs else (
            FIRST_DC if FIRST_DC in sandbox.dcs else sandbox.home_dc)
        host, port = sandbox.dcs[dc]
        client.session.set_dc(dc, host, port)   # keeps the session's key; ports change per run
    return client


async def login(client: TelegramClient, *, bot_token: str | None, phone: str | None,
                ask: Callable[[str, bool], Awaitable[str] | str]) -> str:
    """Log the client in (bot token, or phone + code + optional 2FA password). Returns who it is.

    `ask(prompt, secret)` asks the user for a value (the code, the password)."""
    async def prompt(text: str, secret: bool = False) -> str:
        value = ask(text, secret)
        return (await value if hasattr(value, "__await__") else value).strip()

    if not client.is_connected():
        await client.connect()
    if await client.is_user_authorized():
        return _describe(await client.get_me())
    if bot_token:
        try:
            await client.sign_in(bot_token=bot_token)
        except errors.AccessTokenInvalidError:
            raise ConfigError("Telegram refused the bot token — check it with @BotFather") from None
    else:
        phone = phone or await prompt("Phone number (international format, e.g. +4915112345678): ")
        try:
            sent = await client.send_code_request(phone)
        except errors.PhoneNumberInvalidError:
            raise ConfigError(f"Telegram does not know the phone number {phone!r}") from None
        for _ in range(3):
            code = await prompt("Login code (sent to your Telegram app): ")
            try:
                await client.sign_in(phone=phone, code=code, phone_code_hash=sent.phone_code_hash)
                break
            except errors.PhoneCodeInvalidError:
                log.warning("that code is not right; try again")
            except errors.SessionPasswordNeededError:
                await _password(client, prompt)
                break
        else:
            raise ConfigError("three wrong login codes — run `tgdav login` again")
    session_file = Path(client.session.filename)
    if session_file.exists():
        os.chmod(session_file, 0o600)
    return _describe(await client.get_me())


async def _password(client: TelegramClient, prompt) -> None:
    for _ in range(3):
        try:
            await client.sign_in(password=await prompt("Two-step verification password: ", True))
            return
        except errors.PasswordHashInvalidError:
            log.warning("that password is not right; try again")
    raise ConfigError("three wrong passwords — run `tgdav login` again")


def _describe(me) -> str:
    who = f"@{me.username}" if getattr(me, "username", None) else (me.first_name or str(me.id))
    return f"{who} ({'bot' if me.bot else 'user'} {me.id})"
