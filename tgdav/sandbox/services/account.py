"""account.*: the cloud password description a client needs to run SRP (2FA)."""

from __future__ import annotations

from telethon.tl import functions

from tgdav.sandbox.context import CallContext
from tgdav.sandbox.services.auth import password_account
from tgdav.sandbox.services.state import State


def get_password(s: State, ctx: CallContext, req: functions.account.GetPasswordRequest):
    return s.passwords.describe(password_account(s, ctx))


HANDLERS = {functions.account.GetPasswordRequest: get_password}
