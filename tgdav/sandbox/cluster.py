"""All DC listeners of one sandbox, each on host:0, from a running loop (Cluster) or from plain code
(ClusterThread: the cluster in its own loop on a daemon thread, for pytest and the CLI)."""

from __future__ import annotations

import asyncio
import threading
from typing import Awaitable, TypeVar

from .context import Dispatcher
from .controls import Controls
from .counters import Counters
from .keys import AuthKeyStore
from .proto.session import Salts
from .rsakey import SandboxRsaKey
from .server import DcServer

T = TypeVar("T")


class Cluster:
    def __init__(self, dispatcher: Dispatcher, keys: AuthKeyStore, counters: Counters, controls: Controls,
                 rsa: SandboxRsaKey, dc_ids: tuple[int, ...] = (1, 2, 3, 4, 5), host: str = "127.0.0.1") -> None:
        salts = Salts()
        self.host = host
        self.servers = {dc: DcServer(dc, dispatcher, keys, counters, controls, rsa, salts, host) for dc in dc_ids}
        self.ports: dict[int, int] = {}

    async def start(self) -> None:
        try:
            for dc, server in self.servers.items():
                self.ports[dc] = await server.start()
        except BaseException:
            await self.stop()
            raise

    async def stop(self) -> None:
        await asyncio.gather(*(server.stop() for server in self.servers.values()))
        self.ports = {}


class ClusterThread:
    """A Cluster on its own event loop in a daemon thread. start() returns once every DC listens."""

    def __init__(self, dispatcher: Dispatcher, keys: AuthKeyStore, counters: Counters, controls: Controls,
                 rsa: SandboxRsaKey, dc_ids: tuple[int, ...] = (1, 2, 3, 4, 5), host: str = "127.0.0.1") -> None:
        self.cluster = Cluster(dispatcher, keys, counters, controls, rsa, dc_ids, host)
        self.loop = asyncio.new_event_loop()
        self._thread = threading.Thread(target=self.loop.run_forever, name="sandbox-cluster", daemon=True)

    @property
    def ports(self) -> dict[int, int]:
        return self.cluster.ports

    def start(self) -> "ClusterThread":
        self._thread.start()
        self.run(self.cluster.start())
        return self

    def run(self, coro: Awaitable[T], timeout: float | None = 30) -> T:
        """Run a coroutine on the cluster's loop (e.g. something of the dispatcher's) and wait for it."""
        return asyncio.run_coroutine_threadsafe(coro, self.loop).result(timeout)

    def stop(self) -> None:
        if not self._thread.is_alive():
            return
        try:
            self.run(self.cluster.stop())
        finally:
            self.loop.call_soon_threadsafe(self.loop.stop)
            self._thread.join(10)
            if not self.loop.is_running():
                self.loop.close()

    def __enter__(self) -> "ClusterThread":
        return self.start()

    def __exit__(self, *exc) -> None:
        self.stop()
