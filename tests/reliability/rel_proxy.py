"""A small TCP proxy on loopback that can stop forwarding (a network partition) or cut one reply.

It listens on ``127.0.0.1:<port>`` and forwards each connection to a Redis unix socket (or TCP
port). Runs on the test's asyncio event loop.

- ``partition()``: bytes stop flowing both ways on every connection, existing and new (they are
  held, as TCP holds unacknowledged segments, and delivered by ``heal()``), so the peers see a
  silent network, not a reset.
- ``cut_next_reply()``: the next bytes coming back from Redis are discarded and the connection is
  closed: the command ran on the server, the client saw a dropped connection (what a socket
  timeout looks like) and retries it.
"""

from __future__ import annotations

import asyncio
import contextlib


class Proxy:
    def __init__(self, *, unix_path: str | None = None, port: int | None = None) -> None:
        self.unix_path = unix_path
        self.upstream_port = port
        self.flowing = asyncio.Event()
        self.flowing.set()
        self.cut_replies = 0
        self.cut_every = 0  # > 0: cut every Nth reply chunk (chaos for client retries)
        self._replies = 0
        self.cuts_done = 0
        self.connections = 0
        self._server: asyncio.Server | None = None
        self._writers: set[asyncio.StreamWriter] = set()
        self.port = 0

    @property
    def url(self) -> str:
        return f"redis://127.0.0.1:{self.port}/0"

    async def start(self) -> Proxy:
        self._server = await asyncio.start_server(self._handle, "127.0.0.1", 0)
        self.port = self._server.sockets[0].getsockname()[1]
        return self

    def partition(self) -> None:
        self.flowing.clear()

    def heal(self) -> None:
        self.flowing.set()

    def cut_next_reply(self) -> None:
        self.cut_replies += 1

    async def close(self) -> None:
        if self._server is not None:
            self._server.close()
        for w in list(self._writers):
            w.close()
        if self._server is not None:
            with contextlib.suppress(Exception):
                await asyncio.wait_for(self._server.wait_closed(), 2)

    async def _handle(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self.connections += 1
        try:
            if self.unix_path is not None:
                up_reader, up_writer = await asyncio.open_unix_connection(self.unix_path)
            else:
                up_reader, up_writer = await asyncio.open_connection(
                    "127.0.0.1", self.upstream_port
                )
        except OSError:
            writer.close()
            return
        self._writers.update((writer, up_writer))
        tasks = [
            asyncio.create_task(self._pump(reader, up_writer, writer, upstream=False)),
            asyncio.create_task(self._pump(up_reader, writer, up_writer, upstream=True)),
        ]
        try:
            await asyncio.wait(tasks, return_when=asyncio.FIRST_COMPLETED)
        finally:
            for t in tasks:
                t.cancel()
            for w in (writer, up_writer):
                w.close()
                self._writers.discard(w)

    async def _pump(
        self,
        reader: asyncio.StreamReader,
        writer: asyncio.StreamWriter,
        other: asyncio.StreamWriter,
        *,
        upstream: bool,
    ) -> None:
        while True:
            data = await reader.read(65536)
            if not data:
                return
            await self.flowing.wait()
            if upstream:
                self._replies += 1
            if upstream and (
                self.cut_replies > 0 or (self.cut_every and self._replies % self.cut_every == 0)
            ):
                self.cut_replies = max(0, self.cut_replies - 1)
                self.cuts_done += 1
                return  # drop the reply; the caller closes both sides
            writer.write(data)
            await writer.drain()
