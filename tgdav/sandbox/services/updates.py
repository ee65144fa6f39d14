"""updates.*: the sandbox sends no updates, so the state is fixed and the difference always empty."""

from __future__ import annotations

import time

from telethon.tl import functions, types

from tgdav.sandbox.context import CallContext
from tgdav.sandbox.services.state import State

PTS = 1


def get_state(s: State, ctx: CallContext, req: functions.updates.GetStateRequest):
    s.user(ctx)
    return types.updates.State(pts=PTS, qts=0, date=int(time.time()), seq=0, unread_count=0)


def get_difference(s: State, ctx: CallContext, req: functions.updates.GetDifferenceRequest):
    s.user(ctx)
    return types.updates.DifferenceEmpty(date=int(time.time()), seq=0)


HANDLERS = {
    functions.updates.GetStateRequest: get_state,
    functions.updates.GetDifferenceRequest: get_difference,
}
