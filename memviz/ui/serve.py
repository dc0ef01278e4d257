"""A Streamlit server in a child process, for the browser tests, the docs' screenshots and the
packaging check: a free localhost port, and waiting until the server answers its health check.
(No streamlit import: it talks to the server over HTTP.)"""

from __future__ import annotations

import socket
import time
import urllib.request


def free_port() -> int:
    """A TCP port on 127.0.0.1 that nothing listens on now."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def wait_healthy(url: str, seconds: float = 120.0) -> bool:
    """True once ``url``'s ``/_stcore/health`` answers ``ok``; False after ``seconds``."""
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        try:
            if urllib.request.urlopen(f"{url}/_stcore/health", timeout=1).read() == b"ok":
                return True
        except OSError:
            time.sleep(0.5)
    return False
