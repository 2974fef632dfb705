"""The edge-context reference cases, for tests that carry an edge context to a server.

Their public keys go into a secrets file where the server's
``EdgeRequestContextFactory`` looks for them, and one of their tokens is a
valid user token.
"""

from __future__ import annotations

import json
from pathlib import Path

from tests import vectors

EDGE = vectors.load("edge")
EDGE_KEY_PATH = "secret/authentication/public-key"
VALID_USER_TOKEN = next(
    case["fields"]["authentication_token"]
    for case in EDGE["cases"]
    if case["desc"] == "all documented fields, valid user token"
)


def write_edge_secrets(path: Path) -> Path:
    """Write a secrets file holding the cases' public keys at :data:`EDGE_KEY_PATH`."""
    secret = {"type": "versioned", **EDGE["keys"]}
    path.write_text(json.dumps({"secrets": {EDGE_KEY_PATH: secret}}))
    return path
