"""The data controller's identity, declared in `policy_docs/purposes.yaml` (shown in receipts and reports)."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import yaml


@dataclass(frozen=True)
class Controller:
    name: str
    address: str
    email: str
    phone: str
    contact: str
    url: str
    jurisdiction: str


def load_controller(policy_dir: Path) -> Controller:
    tree = yaml.safe_load((policy_dir / "purposes.yaml").read_text(encoding="utf-8")) or {}
    data = tree.get("controller") if isinstance(tree, dict) else None
    if not isinstance(data, dict):
        data = {}

    def text(key: str) -> str:
        value = data.get(key)
        return "" if value is None else str(value)  # `name:` left empty is not the name "None"

    return Controller(
        name=text("name"),
        address=text("address"),
        email=text("email"),
        phone=text("phone"),
        contact=text("contact"),
        url=text("url"),
        jurisdiction=text("jurisdiction"),
    )
