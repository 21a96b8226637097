"""`server.gunicorn_worker.GunicornWorker`: the gunicorn worker class that serves the app as `python -m server serve`
serves it, for operators who run gunicorn (docs/operations.md, "Processes and background work"):

    gunicorn 'server.asgi:create()' -k server.gunicorn_worker.GunicornWorker -w 2 -b 127.0.0.1:8000

It is `uvicorn_worker.UvicornWorker` (the `uvicorn-worker` package, installed beside gunicorn: neither is a
dependency of the service) with what `serve` sets (`server.serving.uvicorn_options`): our HTTP protocol with the
header time limit, `HTTP_KEEP_ALIVE_SECONDS`, `HTTP_MAX_CONNECTIONS`, no access log of uvicorn's (the app logs
each request). And uvicorn's own proxy headers off: UvicornWorker passes gunicorn's `forwarded_allow_ips`, which
gunicorn reads from the environment variable `FORWARDED_ALLOW_IPS` and otherwise sets to 127.0.0.1, so uvicorn
would believe `X-Forwarded-*` from any loopback peer, before and beside the app's own trust rules
(`server.middleware.proxy`, invariant 27). gunicorn's `--keep-alive` is therefore not used.
"""

from __future__ import annotations

from typing import Any

from uvicorn_worker import UvicornWorker

from server.serving import uvicorn_options
from server.settings import Settings


class GunicornWorker(UvicornWorker):
    def __init__(self, *args: Any, **kwargs: Any) -> None:
        options = uvicorn_options(Settings.from_env())
        # Read by UvicornWorker.__init__ into uvicorn's Config, after gunicorn's own options.
        self.CONFIG_KWARGS = {
            "loop": "auto",
            "http": options["http"],
            "timeout_keep_alive": options["timeout_keep_alive"],
            "limit_concurrency": options["limit_concurrency"],
            "access_log": False,
            "proxy_headers": False,
        }
        super().__init__(*args, **kwargs)
