"""A marketing system's copy of an audience, kept by the audience export and its change feed."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import orjson
from starlette.testclient import TestClient


def _read(client: TestClient, auth: dict[str, str], path: str) -> tuple[list[dict[str, Any]], str]:
    response = client.get(path, headers=auth)
    assert response.status_code == 200, response.text
    return [orjson.loads(line) for line in response.content.splitlines()], response.headers["x-next-since"]


@dataclass
class Copy:
    """What a marketing system keeps of one audience: the refs allowed, and the cursor of its next poll."""

    pair: tuple[str, str]
    refs: set[str] = field(default_factory=set)
    cursor: str = ""

    @property
    def path(self) -> str:
        return f"/v1/audiences/{self.pair[0]}/{self.pair[1]}"

    def export(self, client: TestClient, auth: dict[str, str]) -> set[str]:
        rows, self.cursor = _read(client, auth, self.path)
        self.refs = {row["ref"] for row in rows}
        return self.refs

    def poll(self, client: TestClient, auth: dict[str, str]) -> list[dict[str, Any]]:
        lines, self.cursor = _read(client, auth, f"{self.path}?since={self.cursor}")
        for line in lines:
            assert set(line) == {"ref", "allowed", "reason"}, line
            (self.refs.add if line["allowed"] else self.refs.discard)(line["ref"])
        return lines
