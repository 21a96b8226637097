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
    data = (yaml.safe_load((policy_dir / "purposes.yaml").read_text(encoding="utf-8")) or {}).get("controller") or {}
    return Controller(
        name=str(data.get("name", "")),
        address=str(data.get("address", "")),
        email=str(data.get("email", "")),
        phone=str(data.get("phone", "")),
        contact=str(data.get("contact", "")),
        url=str(data.get("url", "")),
        jurisdiction=str(data.get("jurisdiction", "")),
    )
