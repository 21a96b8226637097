"""`python -m bench.serve --port N`: runs the benchmark server (`bench.app`), importing nothing until it runs.

The stream's worker processes are started with `spawn`, which imports the command's main module again in each
worker (as `__mp_main__`) before the worker's own code. Started as `python -m bench.app`, every worker imported the
whole service with it (the ORM, the web stack): ~79 MB of RSS a worker instead of the ~30 MB that `consent-ledger
serve` and `python -m server serve` give them (`server/launch.py`; `spawn` skips a package's `__main__`), so the
benchmark measured heavier workers than the product runs.
"""

from __future__ import annotations


def main() -> int:
    from bench.app import main as app_main  # here, not at the top: see the module docstring

    return app_main()


if __name__ == "__main__":
    raise SystemExit(main())
