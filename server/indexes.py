"""The covering indexes the consent check names in its SQL (`INDEXED BY` on SQLite), declared by the models.

Kept out of the `server.models` package (which imports the ORM) so that the stream worker processes read with
them without importing the ORM.
"""

from __future__ import annotations

CHECK_STATE_INDEX = "consent_states_check"
CHECK_STATE_COLUMNS = (
    "subject_id",
    "purpose_id",
    "channel_id",
    "status",
    "since",
    "valid_until",
    "policy_version_id",
    "event_id",
)
CHECK_SUBJECT_INDEX = "subjects_check_by_ref"
CHECK_SUBJECT_COLUMNS = ("ref", "id", "erased_at", "restricted_at")
