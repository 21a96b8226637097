"""`python -m bench.write_serve --port N`: one process of the write benchmark's server, on a shared port.

The real app (`server.app.create_app`) under uvicorn, 1 worker, with the options `python -m server serve` gives it
(`server.serving.uvicorn_options`: its header-timeout HTTP protocol, keep-alive, connection limit; uvicorn's own
proxy-header middleware off, as there: `server.middleware.proxy` reads the proxy's headers), but listening on a
socket bound with `SO_REUSEPORT`: `bench.write_bench` starts one or two of these on the same port and the kernel spreads
the connections between them, which is how several independent server processes share one address without a
supervisor. Settings come from the environment, as for `python -m server serve`. Never part of the product.
"""

from __future__ import annotations

import argparse
import socket


def reuseport_socket(host: str, port: int) -> socket.socket:
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEPORT, 1)
    sock.bind((host, port))
    sock.listen(2048)
    sock.set_inheritable(True)
    return sock


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.write_serve", description=__doc__.split("\n\n")[0])
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, required=True)
    args = parser.parse_args(argv)

    import asyncio

    import uvicorn

    from bench.app import event_loop_and_parser
    from server.app import create_app
    from server.logs import configure_logging
    from server.runtime import tune_gc
    from server.serving import configure, uvicorn_options
    from server.settings import Settings

    settings = Settings.from_env()
    configure_logging(settings.log_level)
    configure(settings)
    loop, _ = event_loop_and_parser()
    app = create_app(settings)
    tune_gc()  # as `python -m server serve` does
    options = {k: v for k, v in uvicorn_options(settings).items() if k not in ("host", "port")}
    config = uvicorn.Config(app, loop=loop, log_level="warning", workers=1, proxy_headers=False, **options)
    server = uvicorn.Server(config)
    sock = reuseport_socket(args.host, args.port)
    if loop == "uvloop":
        import uvloop

        uvloop.run(server.serve(sockets=[sock]))
    else:
        asyncio.run(server.serve(sockets=[sock]))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
