"""A local multi-DC Telegram that speaks real MTProto to an unmodified Telethon.

Layout (each module owns one thing):
    content.py   deterministic file bytes: pattern(seed, offset, length)
    counters.py  per-DC counters the tests and benchmarks assert on
    controls.py  link emulation and fault settings (changed live through the admin API)
    keys.py      auth keys per DC and which account each is bound to (persisted in the state dir)
    context.py   CallContext, RpcError and the Dispatcher protocol between server and services
    proto/       sans-IO MTProto: transports, DH handshake, MTProto 2.0 messages
    server.py    one asyncio TCP listener per DC running proto/ and calling the dispatcher
    link.py      per-connection latency and bandwidth emulation (server -> client)
    uplink.py    per-connection upload bandwidth cap (client -> server)
    cluster.py   starts every DC listener on 127.0.0.1:0
    world.py     accounts, channels, messages, documents, who may post where
    writes.py    what clients write, applied to the world and journaled in the state dir
    parts.py     upload parts on disk per (account, DC, file_id), Telegram's part rules, expiry
    services/    the RPC methods, with Telegram's semantics and error names
    admin.py     HTTP admin: GET /counters, POST /faults, POST /link
"""
