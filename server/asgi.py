"""`server.asgi:create`: the app for an ASGI server started by the operator, one call per worker process.

    uvicorn server.asgi:create --factory --http server.serving:HeaderTimeoutProtocol --no-proxy-headers --workers 2
    gunicorn 'server.asgi:create()' -k server.gunicorn_worker.GunicornWorker -w 2

It does what `python -m server serve` does in each of its processes: settings from the environment (and `.env`),
JSON logs, this process's header time limit (`server.serving`), the app, then the garbage collector's tuning
(`server.runtime`). Everything else that `serve` sets (listening address, keep-alive, connection limit) is the
ASGI server's own options: docs/operations.md, "Processes and background work", gives the command lines.
"""

from __future__ import annotations

from starlette.applications import Starlette

from server.app import create_app
from server.logs import configure_logging
from server.runtime import tune_gc
from server.serving import configure
from server.settings import Settings


def create() -> Starlette:
    settings = Settings.from_env()
    configure_logging(settings.log_level)
    configure(settings)
    app = create_app(settings)
    tune_gc()
    return app
