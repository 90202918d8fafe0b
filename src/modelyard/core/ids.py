"""Identifiers: 32 hex characters, the shape the seed's ids have."""

import uuid


def new_id() -> str:
    return uuid.uuid4().hex
