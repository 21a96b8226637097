"""Tortoise models: the tables of the service. One module per concept; this package is the Tortoise app."""

from server.models.breaches import Breach, BreachEntry
from server.models.catalog import Channel, PolicyVersion, Purpose, PurposeBasisChange
from server.models.clients import ApiClient, ApiClientsVersion
from server.models.desk import DataSubjectRequest, DsrHistory, StaffAccount, Suppression
from server.models.idempotency import IdempotencyKey
from server.models.leases import Lease
from server.models.ledger import ConsentEvent, ConsentState, UISnapshot
from server.models.proof import AccessLog, Checkpoint, LogEntry, LogIdentity, LogQueue, MerkleNode, Receipt
from server.models.recipients import Recipient, RecipientNotice
from server.models.signin import SignInThrottle
from server.models.subjects import FormerContact, Subject

__all__ = [
    "AccessLog",
    "ApiClient",
    "ApiClientsVersion",
    "Breach",
    "BreachEntry",
    "Channel",
    "Checkpoint",
    "ConsentEvent",
    "ConsentState",
    "DataSubjectRequest",
    "DsrHistory",
    "FormerContact",
    "IdempotencyKey",
    "Lease",
    "LogEntry",
    "LogIdentity",
    "LogQueue",
    "MerkleNode",
    "PolicyVersion",
    "Purpose",
    "PurposeBasisChange",
    "Receipt",
    "Recipient",
    "RecipientNotice",
    "SignInThrottle",
    "StaffAccount",
    "Subject",
    "Suppression",
    "UISnapshot",
]
