"""Consent proof: receipts, the transparency log (RFC 6962/9162 Merkle tree), proof bundles and their verifier."""
