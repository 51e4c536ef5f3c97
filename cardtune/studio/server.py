"""Serving the studio: ``serve`` (the CLI's foreground server) and ``start`` (a background server for tests and the
screenshot script), both uvicorn on a loopback address by default, with the token printed in the URL.
"""

from __future__ import annotations

import socket
import threading
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from cardtune.studio.auth import new_token
from cardtune.studio.workspace import Workspace


@dataclass
class Running:
    """A studio serving in a background thread: its base URL, the URL with the token, and ``stop``."""

    url: str
    token: str
    server: Any
    thread: threading.Thread

    @property
    def login_url(self) -> str:
        return f"{self.url}/?token={self.token}"

    def stop(self) -> None:
        self.server.should_exit = True
        self.thread.join(timeout=10)


def _config(ws: Workspace, host: str, port: int, token: str) -> Any:
    import uvicorn

    from cardtune.studio.app import create_app

    return uvicorn.Config(create_app(ws, token), host=host, port=port, log_level="warning", access_log=False)


def start(ws: Workspace, host: str = "127.0.0.1", token: str | None = None) -> Running:
    """Serve ``ws`` on a free port in a daemon thread; returns once it accepts connections."""
    import uvicorn

    token = token or new_token()
    with socket.socket() as probe:
        probe.bind((host, 0))
        port = probe.getsockname()[1]
    server = uvicorn.Server(_config(ws, host, port, token))
    thread = threading.Thread(target=server.run, name="cardtune-studio", daemon=True)
    thread.start()
    deadline = time.monotonic() + 20
    while not server.started:
        if not thread.is_alive() or time.monotonic() > deadline:
            raise RuntimeError(f"the studio did not start on {host}:{port}")
        time.sleep(0.02)
    return Running(f"http://{host}:{port}", token, server, thread)


def serve(card: Path | None, host: str, port: int, runs_dir: Path, say: Any = print) -> None:
    """Serve in the foreground until Ctrl-C, after printing the URL with the access token."""
    import uvicorn

    token = new_token()
    ws = Workspace(card, runs_dir)
    server = uvicorn.Server(_config(ws, host, port, token))
    config = server.config

    original = server.startup

    async def startup(sockets: Any = None) -> None:
        await original(sockets)
        bound = [s.getsockname() for srv in server.servers for s in srv.sockets] if server.servers else []
        real_port = bound[0][1] if bound else config.port
        shown = f"[{host}]" if ":" in host else host
        say(f"cardtune studio: open http://{shown}:{real_port}/?token={token}")
        if host not in ("127.0.0.1", "localhost", "::1"):
            say(f"warning: listening on {host}, not only this machine; anyone with the URL can edit {ws.folder}")

    server.startup = startup  # type: ignore[method-assign]
    server.run()
