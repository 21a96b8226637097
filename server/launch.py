"""The `consent-ledger` command (pyproject `[project.scripts]`): `python -m server` under another name.

It imports nothing until it runs. The stream workers are started with `spawn`, which runs the command's script
again in each worker before the worker's own code: a script that imported `server.cli` there would load the whole
service (the ORM, the web stack) into every worker, for nothing.
"""

from __future__ import annotations


def main() -> int:
    from server.cli import main as cli_main  # here, not at the top: see the module docstring

    return cli_main()
