"""help.*: the configuration a client connects with (every DC at 127.0.0.1 and its real port), and
the client configuration of help.getAppConfig, which carries upload_max_fileparts_default /
upload_max_fileparts_premium (the part limits the controls set) as Telegram documents them."""

from __future__ import annotations

import time

from telethon.tl import functions, types

from tgdav.sandbox.context import CallContext
from tgdav.sandbox.services.state import State

CONFIG_TTL = 3600


def get_config(s: State, ctx: CallContext, req: functions.help.GetConfigRequest):
    now = int(time.time())
    options = [types.DcOption(id=dc, ip_address=host, port=port)
               for dc, (host, port) in sorted(s.world.dcs.items())]
    return types.Config(
        date=now, expires=now + CONFIG_TTL, test_mode=False, this_dc=ctx.dc_id, dc_options=options,
        dc_txt_domain_name="", chat_size_max=200, megagroup_size_max=200000, forwarded_count_max=100,
        online_update_period_ms=210000, offline_blur_timeout_ms=5000, offline_idle_timeout_ms=30000,
        online_cloud_timeout_ms=300000, notify_cloud_delay_ms=30000, notify_default_delay_ms=1500,
        push_chat_period_ms=60000, push_chat_limit=2, edit_time_limit=172800,
        revoke_time_limit=2147483647, revoke_pm_time_limit=2147483647, rating_e_decay=2419200,
        stickers_recent_limit=200, channels_read_media_period=604800, call_receive_timeout_ms=20000,
        call_ring_timeout_ms=90000, call_connect_timeout_ms=30000, call_packet_timeout_ms=10000,
        me_url_prefix="https://t.me/", caption_length_max=1024, message_length_max=4096,
        webfile_dc_id=s.world.dc_ids[0])


def get_nearest_dc(s: State, ctx: CallContext, req: functions.help.GetNearestDcRequest):
    return types.NearestDc(country="ZZ", this_dc=ctx.dc_id, nearest_dc=ctx.dc_id)


def get_app_config(s: State, ctx: CallContext, req: functions.help.GetAppConfigRequest):
    limits = {"upload_max_fileparts_default": s.controls.max_file_parts(False),
              "upload_max_fileparts_premium": s.controls.max_file_parts(True)}
    config = types.JsonObject([types.JsonObjectValue(k, types.JsonNumber(float(v))) for k, v in limits.items()])
    digest = hash(tuple(limits.values())) & 0x7FFFFFFF
    if req.hash and req.hash == digest:
        return types.help.AppConfigNotModified()
    return types.help.AppConfig(hash=digest, config=config)


HANDLERS = {
    functions.help.GetAppConfigRequest: get_app_config,
    functions.help.GetConfigRequest: get_config,
    functions.help.GetNearestDcRequest: get_nearest_dc,
}
