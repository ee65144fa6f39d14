"""auth.*: logging in with a code (and a 2FA password), with a bot token, and moving a login to
another DC with exportAuthorization / importAuthorization."""

from __future__ import annotations

import hashlib
import hmac
import logging
import os

from telethon.tl import functions, types

from tgdav.sandbox.context import CallContext, RpcError
from tgdav.sandbox.services import tl
from tgdav.sandbox.services.state import State
from tgdav.sandbox.world import Account

log = logging.getLogger("tgdav.sandbox.auth")

_NONCE = 16


def _mac(s: State, *parts: object) -> bytes:
    return hmac.new(s.secret, repr(parts).encode(), hashlib.sha256).digest()


def _account_by_phone(s: State, phone: str) -> Account:
    try:
        account = s.world.account_by_phone(phone)
    except ValueError:
        raise RpcError(400, "PHONE_NUMBER_INVALID") from None
    if account is None:
        raise RpcError(400, "PHONE_NUMBER_INVALID")
    return account


def _at_home(ctx: CallContext, account: Account, error: str) -> None:
    """Telegram keeps an account on its one home DC: a login started on another DC is told which
    (303 PHONE_MIGRATE_X for a phone, USER_MIGRATE_X for a bot token; core.telegram.org/api/datacenter),
    and the client moves there (Telethon: _switch_dc) and asks again."""
    if ctx.dc_id != account.home_dc:
        raise RpcError(303, f"{error}_{account.home_dc}")


def _code_hash(s: State, account: Account) -> str:
    return _mac(s, "phone-code-hash", account.phone)[:8].hex()


def authorize(s: State, ctx: CallContext, account: Account) -> types.auth.Authorization:
    """Bind the connection's key to `account` and answer as a finished login does."""
    s.bind(ctx, account)
    s.passwords.finish(ctx.auth_key_id)
    log.info("DC %d: key %016x logged in as %s (%d)", ctx.dc_id, ctx.auth_key_id,
             account.username or account.phone, account.id)
    return types.auth.Authorization(user=tl.user(account, account))


def send_code(s: State, ctx: CallContext, req: functions.auth.SendCodeRequest):
    account = _account_by_phone(s, req.phone_number)
    _at_home(ctx, account, "PHONE_MIGRATE")
    log.info("login code for +%s: %s", account.phone, s.world.login_code)
    return types.auth.SentCode(type=types.auth.SentCodeTypeApp(length=len(s.world.login_code)),
                               phone_code_hash=_code_hash(s, account))


def sign_in(s: State, ctx: CallContext, req: functions.auth.SignInRequest):
    account = _account_by_phone(s, req.phone_number)
    _at_home(ctx, account, "PHONE_MIGRATE")
    if not hmac.compare_digest(req.phone_code_hash or "", _code_hash(s, account)):
        raise RpcError(400, "PHONE_CODE_EXPIRED")
    if not req.phone_code:
        raise RpcError(400, "PHONE_CODE_EMPTY")
    if req.phone_code != s.world.login_code:
        raise RpcError(400, "PHONE_CODE_INVALID")
    if account.password is not None:
        s.passwords.await_password(ctx.auth_key_id, account)
        raise RpcError(401, "SESSION_PASSWORD_NEEDED")
    return authorize(s, ctx, account)


def password_account(s: State, ctx: CallContext) -> Account:
    """The account whose password is in question: the one mid-login on this key, else the logged-in one."""
    pending = s.passwords.awaiting(ctx.auth_key_id)
    if pending is not None:
        return s.world.accounts[pending]
    return s.user(ctx)


def check_password(s: State, ctx: CallContext, req: functions.auth.CheckPasswordRequest):
    account = password_account(s, ctx)
    s.passwords.check(account, req.password)
    return authorize(s, ctx, account)


def import_bot_authorization(s: State, ctx: CallContext, req: functions.auth.ImportBotAuthorizationRequest):
    account = s.world.account_by_token(req.bot_auth_token)
    if account is None:
        raise RpcError(400, "ACCESS_TOKEN_INVALID")
    _at_home(ctx, account, "USER_MIGRATE")
    return authorize(s, ctx, account)


def log_out(s: State, ctx: CallContext, req: functions.auth.LogOutRequest):
    s.user(ctx)
    s.keys.unbind(ctx.auth_key_id)
    return types.auth.LoggedOut()


def export_authorization(s: State, ctx: CallContext, req: functions.auth.ExportAuthorizationRequest):
    account = s.user(ctx)
    if req.dc_id == ctx.dc_id or req.dc_id not in s.world.dc_ids:
        raise RpcError(400, "DC_ID_INVALID")
    s.counters.inc(ctx.dc_id, "exports")
    nonce = os.urandom(_NONCE)
    return types.auth.ExportedAuthorization(
        id=account.id, bytes=nonce + _mac(s, "export", account.id, req.dc_id, nonce))


def import_authorization(s: State, ctx: CallContext, req: functions.auth.ImportAuthorizationRequest):
    account = s.world.accounts.get(req.id)
    nonce, mac = req.bytes[:_NONCE], req.bytes[_NONCE:]
    if account is None or not hmac.compare_digest(mac, _mac(s, "export", req.id, ctx.dc_id, nonce)):
        raise RpcError(400, "AUTH_BYTES_INVALID")
    s.counters.inc(ctx.dc_id, "imports")
    return authorize(s, ctx, account)


HANDLERS = {
    functions.auth.SendCodeRequest: send_code,
    functions.auth.SignInRequest: sign_in,
    functions.auth.CheckPasswordRequest: check_password,
    functions.auth.ImportBotAuthorizationRequest: import_bot_authorization,
    functions.auth.LogOutRequest: log_out,
    functions.auth.ExportAuthorizationRequest: export_authorization,
    functions.auth.ImportAuthorizationRequest: import_authorization,
}
