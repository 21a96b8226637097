"""The server's asymmetric signing keys (ES256), kept as JWK files; the newest signs, all are published.

Rotation (`python -m server keys rotate`) adds a key and leaves the old ones in place so that tokens, receipts and
checkpoints they signed still verify through `/.well-known/jwks.json`.
"""

from __future__ import annotations

import json
import os
import time
from pathlib import Path
from typing import Any

from joserfc.jwk import ECKey, KeySet

ALGORITHM = "ES256"


class KeyStore:
    def __init__(self, directory: Path) -> None:
        self.directory = directory
        self._keys: list[ECKey] = []

    def load(self) -> KeyStore:
        """Read every key file; create the first key if there is none."""
        files = sorted(self.directory.glob("*.jwk.json")) if self.directory.is_dir() else []
        if not files:
            self.rotate()
            return self
        self._keys = [ECKey.import_key(json.loads(path.read_text())) for path in files]
        return self

    def rotate(self) -> str:
        """Create a new signing key (the new active one); returns its `kid`."""
        key = ECKey.generate_key("P-256", parameters={"use": "sig", "alg": ALGORITHM}, private=True)
        kid = key.thumbprint()
        key = ECKey.import_key(key.as_dict(private=True), parameters={"kid": kid, "use": "sig", "alg": ALGORITHM})
        self.directory.mkdir(parents=True, exist_ok=True)
        path = self.directory / f"{time.time_ns():020d}-{kid}.jwk.json"
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        with os.fdopen(fd, "w") as handle:
            json.dump(key.as_dict(private=True), handle)
        self._keys.append(key)
        return kid

    @property
    def active(self) -> ECKey:
        return self._keys[-1]

    @property
    def key_set(self) -> KeySet:
        return KeySet(list(self._keys))

    def jwks(self) -> dict[str, Any]:
        return {"keys": [key.as_dict(private=False) for key in self._keys]}
