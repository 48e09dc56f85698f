"""A do-nothing API under swdepot's own server: the floor for bench/api_load.py.

It answers every request with the bytes of one real poll answer (its body and headers,
captured from the service under test), served by the same uvicorn configuration,
hardened TLS and allocator settings as ``swdepot serve``. Whatever this process costs
under a load is what the HTTP server, TLS and the kernel cost, with no application work
at all.

    python bench/nullapp.py PORT CERT KEY ANSWER.json
"""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Any

import uvicorn

from swdepot.server import tune_allocator, uvicorn_config
from swdepot.tls import harden


def make_app(body: bytes, headers: list[tuple[bytes, bytes]]) -> Any:
    async def app(scope: dict, receive: Any, send: Any) -> None:
        if scope["type"] != "http":
            return
        await send({"type": "http.response.start", "status": 200, "headers": headers})
        await send({"type": "http.response.body", "body": body})

    return app


def main() -> None:
    port, cert, key, answer = sys.argv[1:5]
    saved = json.loads(Path(answer).read_text())
    body = saved["body"].encode()
    headers = [(k.encode(), v.encode()) for k, v in saved["headers"]]
    config = uvicorn_config(make_app(body, headers), "127.0.0.1", int(port),
                            log_level="warning", lifespan="off", log_config=None,
                            ssl_certfile=cert, ssl_keyfile=key)
    config.load()
    assert config.ssl is not None
    harden(config.ssl)
    tune_allocator()  # as swdepot serve does
    uvicorn.Server(config).run()


if __name__ == "__main__":
    main()
