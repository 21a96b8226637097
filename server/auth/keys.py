"""The server's asymmetric signing keys (ES256), kept as JWK files; the newest signs, all are published.

Rotation (`python -m server keys rotate`) adds a key and leaves the old ones in place so that tokens, receipts and
checkpoints they signed still verify through `/.well-known/jwks.json`. A running server sees a key added by another
process (the command, or another server process on the same directory) at its next signature or publication: it
looks at the directory's modification time each time, and reads the files again when it changed. So it never
publishes a JWKS without the key of a checkpoint the command signed, and needs no restart to sign with a new key.
"""

from __future__ import annotations

import json
import logging
import os
import time
from pathlib import Path
from typing import Any

from joserfc.errors import JoseError
from joserfc.jwk import ECKey, KeySet

from server.files import create_private
from server.settings import Settings

ALGORITHM = "ES256"
log = logging.getLogger("server.keys")


class KeyStore:
    def __init__(self, directory: Path) -> None:
        self.directory = directory
        self._keys: list[ECKey] = []
        self._by_file: dict[str, ECKey] = {}
        self._seen: int | None = None  # the directory's mtime (ns) when its files were last read

    def load(self) -> KeyStore:
        """Read every key file; create the first key if there is none."""
        self._read()
        if not self._keys:
            self.rotate()
        return self

    def _read(self) -> None:
        """The key files, oldest first (their names start with their creation time); each parsed once. A file
        that cannot be read as a key is left out, with a warning, rather than stopping every signature: keys are
        written whole under another name, then renamed (`rotate`), so this is a stray or damaged file."""
        try:
            seen = self.directory.stat().st_mtime_ns
        except OSError:
            return
        files = []
        for path in sorted(self.directory.glob("*.jwk.json")):
            if path.name not in self._by_file:
                try:
                    self._by_file[path.name] = ECKey.import_key(json.loads(path.read_text()))
                except (OSError, ValueError, JoseError, TypeError, KeyError) as exc:
                    log.warning("signing key file %s left out: %s", path.name, type(exc).__name__)
                    continue
            files.append(path)
        if files or not self._keys:  # never trade the keys in use for none
            self._keys = [self._by_file[path.name] for path in files]
        self._seen = seen

    def _current(self) -> list[ECKey]:
        """The keys, read again if another process added one since (see the module's docstring)."""
        try:
            changed = self.directory.stat().st_mtime_ns != self._seen
        except OSError:
            changed = False  # the directory went away or cannot be read: keep signing with what was read
        if changed:
            self._read()
        return self._keys

    def rotate(self) -> str:
        """Create a new signing key (the new active one); returns its `kid`."""
        key = ECKey.generate_key("P-256", parameters={"use": "sig", "alg": ALGORITHM}, private=True)
        kid = key.thumbprint()
        key = ECKey.import_key(key.as_dict(private=True), parameters={"kid": kid, "use": "sig", "alg": ALGORITHM})
        path = self.directory / f"{time.time_ns():020d}-{kid}.jwk.json"
        # Written whole under a name no reader looks for, then renamed: a server reading the directory meanwhile
        # sees no key or the whole key, never a half-written file. 0600, in a folder created 0700.
        partial = self.directory / f".{path.name}.partial"
        with os.fdopen(create_private(partial), "w") as handle:
            json.dump(key.as_dict(private=True), handle)
            handle.flush()
            os.fsync(handle.fileno())
        os.replace(partial, path)
        self._by_file[path.name] = key
        self._read()
        return kid

    @property
    def active(self) -> ECKey:
        return self._current()[-1]

    @property
    def key_set(self) -> KeySet:
        return KeySet(list(self._current()))

    def jwks(self) -> dict[str, Any]:
        return {"keys": [key.as_dict(private=False) for key in self._current()]}


def signing_keys(settings: Settings) -> KeyStore:
    """The store of `SIGNING_KEYS_DIR`, read (a first key is made when there is none): what every command that signs
    or checks a signature builds."""
    return KeyStore(settings.signing_keys_dir).load()
