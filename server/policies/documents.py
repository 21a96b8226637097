"""Reading `policy_docs/`: purpose declarations and versioned policy texts with front matter."""

from __future__ import annotations

import hashlib
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import yaml

LEGAL_BASES = ("consent", "soft_opt_in", "legitimate_interest", "necessary")
BANNER_CATEGORIES = ("necessary", "preferences", "analytics", "marketing")


class PolicySourceError(ValueError):
    """A file under `policy_docs/` is malformed; the message names the file."""


@dataclass(frozen=True)
class PurposeDeclaration:
    code: str
    legal_basis: str
    channels: tuple[str, ...]
    channel_basis: dict[str, str] = field(default_factory=dict)
    validity_days: int | None = None
    double_opt_in: bool = False
    marketing: bool = False
    banner_category: str | None = None
    third_parties: tuple[str, ...] = ()
    titles: dict[str, str] = field(default_factory=dict)
    descriptions: dict[str, str] = field(default_factory=dict)


@dataclass(frozen=True)
class PolicySource:
    """One policy file: its front matter and the SHA-256 of its exact bytes."""

    path: Path
    document: str
    version: str
    lang: str
    title: str
    effective_at: datetime
    material: bool
    purposes: tuple[str, ...]
    summary: str
    content: str
    sha256: str

    @property
    def label(self) -> str:
        return f"{self.document}/{self.version}/{self.lang}"


@dataclass(frozen=True)
class PolicyTree:
    channels: tuple[str, ...]
    purposes: tuple[PurposeDeclaration, ...]
    documents: tuple[PolicySource, ...]
    controller: dict[str, str]


def load_tree(root: Path) -> PolicyTree:
    """Parse `root/purposes.yaml` and every `root/<document>/<version>/<lang>.md`."""
    declarations = _load_yaml(root / "purposes.yaml")
    channels = tuple(str(c) for c in declarations.get("channels", []))
    raw_purposes = declarations.get("purposes", [])
    if not isinstance(raw_purposes, list) or not all(isinstance(raw, dict) for raw in raw_purposes):
        raise PolicySourceError(f"{root / 'purposes.yaml'}: purposes must be a list of mappings, one per purpose")
    purposes = tuple(_purpose(root / "purposes.yaml", raw, channels) for raw in raw_purposes)
    known = {p.code for p in purposes}
    documents = []
    for path in sorted(root.glob("*/*/*.md")):
        source = read_policy(path)
        unknown = set(source.purposes) - known
        if unknown:
            raise PolicySourceError(f"{path}: front matter names undeclared purposes {sorted(unknown)}")
        documents.append(source)
    return PolicyTree(channels, purposes, tuple(documents), dict(declarations.get("controller", {})))


def read_policy(path: Path) -> PolicySource:
    raw = path.read_bytes()
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise PolicySourceError(f"{path}: not UTF-8 ({exc})") from None
    if not text.startswith("---\n"):
        raise PolicySourceError(f"{path}: missing front matter (the file must start with '---')")
    end = text.find("\n---\n", 4)
    if end < 0:
        raise PolicySourceError(f"{path}: front matter is not closed by a '---' line")
    try:
        meta = yaml.safe_load(text[4:end]) or {}
    except yaml.YAMLError as exc:
        raise PolicySourceError(f"{path}: front matter is not valid YAML ({exc})") from None
    if not isinstance(meta, dict):
        raise PolicySourceError(f"{path}: front matter must be a mapping of fields (document, version, ...)")
    missing = {"document", "version", "lang", "title", "effective_at"} - set(meta)
    if missing:
        raise PolicySourceError(f"{path}: front matter lacks {sorted(missing)}")
    expected = (path.parent.parent.name, path.parent.name, path.stem)
    found = (str(meta["document"]), str(meta["version"]), str(meta["lang"]))
    if found != expected:
        raise PolicySourceError(f"{path}: front matter says {'/'.join(found)}, path says {'/'.join(expected)}")
    return PolicySource(
        path=path,
        document=found[0],
        version=found[1],
        lang=found[2],
        title=str(meta["title"]),
        effective_at=_datetime(path, meta["effective_at"]),
        material=_material(path, meta.get("material", False)),
        purposes=_purposes(path, meta.get("purposes", [])),
        summary=str(meta.get("summary", "")),
        content=text,
        sha256=hashlib.sha256(raw).hexdigest(),
    )


def _material(path: Path, value: object) -> bool:
    """`material:` must be a YAML boolean: a published version can never be changed, and `"no"` read as true
    would ask every person it concerns to consent again."""
    if not isinstance(value, bool):
        raise PolicySourceError(f"{path}: 'material' must be true or false, not {value!r}")
    return value


def _purposes(path: Path, value: object) -> tuple[str, ...]:
    """`purposes:` must be a list of purpose codes (a bare string would be read letter by letter)."""
    if not isinstance(value, list) or not all(isinstance(p, str) and p for p in value):
        raise PolicySourceError(f"{path}: 'purposes' must be a list of purpose codes, not {value!r}")
    return tuple(value)


def _load_yaml(path: Path) -> dict[str, Any]:
    try:
        data = yaml.safe_load(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise PolicySourceError(f"{path}: missing") from None
    except yaml.YAMLError as exc:
        raise PolicySourceError(f"{path}: not valid YAML ({exc})") from None
    if not isinstance(data, dict):
        raise PolicySourceError(f"{path}: expected a mapping at the top level")
    return data


def _purpose(path: Path, raw: dict[str, Any], channels: tuple[str, ...]) -> PurposeDeclaration:
    code = str(raw.get("code", ""))
    where = f"{path}: purpose {code!r}"
    for key in ("channel_basis", "title", "description"):
        if not isinstance(raw.get(key) or {}, dict):
            raise PolicySourceError(f"{where}: {key} must be a mapping (e.g. {{en: ..., fr: ...}})")
    basis = str(raw.get("legal_basis", ""))
    if basis not in LEGAL_BASES:
        raise PolicySourceError(f"{where}: legal_basis {basis!r} is not one of {LEGAL_BASES}")
    purpose_channels = tuple(str(c) for c in raw.get("channels", []))
    if not purpose_channels or set(purpose_channels) - set(channels):
        raise PolicySourceError(f"{where}: channels {purpose_channels} must be a non-empty subset of {channels}")
    channel_basis = {str(k): str(v) for k, v in (raw.get("channel_basis") or {}).items()}
    for channel, value in channel_basis.items():
        if channel not in purpose_channels or value not in LEGAL_BASES:
            raise PolicySourceError(f"{where}: channel_basis {channel}={value!r} is not valid")
    category = raw.get("banner_category")
    if category is not None and category not in BANNER_CATEGORIES:
        raise PolicySourceError(f"{where}: banner_category {category!r} is not one of {BANNER_CATEGORIES}")
    validity = raw.get("validity_days")
    return PurposeDeclaration(
        code=code,
        legal_basis=basis,
        channels=purpose_channels,
        channel_basis=channel_basis,
        validity_days=int(validity) if validity is not None else None,
        double_opt_in=bool(raw.get("double_opt_in", False)),
        marketing=bool(raw.get("marketing", False)),
        banner_category=category,
        third_parties=tuple(str(t) for t in raw.get("third_parties") or ()),
        titles={str(k): str(v) for k, v in (raw.get("title") or {}).items()},
        descriptions={str(k): str(v) for k, v in (raw.get("description") or {}).items()},
    )


def _datetime(path: Path, value: Any) -> datetime:
    if isinstance(value, datetime):
        parsed = value
    else:
        try:
            parsed = datetime.fromisoformat(str(value).replace("Z", "+00:00"))
        except ValueError:
            raise PolicySourceError(f"{path}: effective_at {value!r} is not an ISO-8601 date-time") from None
    if parsed.tzinfo is None:
        parsed = parsed.replace(tzinfo=UTC)
    return parsed.astimezone(UTC)
