"""Tortoise models: the tables of the service. One module per concept; this package is the Tortoise app."""

from server.models.catalog import Channel, PolicyVersion, Purpose
from server.models.clients import ApiClient
from server.models.ledger import ConsentEvent, ConsentState, UISnapshot
from server.models.proof import AccessLog, Checkpoint, LogEntry, LogQueue, MerkleNode, Receipt
from server.models.subjects import Subject

__all__ = [
    "AccessLog",
    "ApiClient",
    "Channel",
    "Checkpoint",
    "ConsentEvent",
    "ConsentState",
    "LogEntry",
    "LogQueue",
    "MerkleNode",
    "PolicyVersion",
    "Purpose",
    "Receipt",
    "Subject",
    "UISnapshot",
]
