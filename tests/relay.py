"""A TCP relay, to make a service appear on a port where nothing listened."""

from __future__ import annotations

import asyncio


async def relay(port: int, host: str, target_port: int) -> asyncio.Server:
    """Listen on 127.0.0.1:``port``; pipe each connection to host:target_port."""

    async def connect(
        reader: asyncio.StreamReader, writer: asyncio.StreamWriter
    ) -> None:
        up_reader, up_writer = await asyncio.open_connection(host, target_port)

        async def pipe(src: asyncio.StreamReader, dst: asyncio.StreamWriter) -> None:
            try:
                while data := await src.read(65536):
                    dst.write(data)
                    await dst.drain()
            finally:
                dst.close()

        await asyncio.gather(
            pipe(reader, up_writer), pipe(up_reader, writer), return_exceptions=True
        )

    return await asyncio.start_server(connect, "127.0.0.1", port)
