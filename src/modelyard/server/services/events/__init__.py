"""The event log: every state change writes one row."""

from modelyard.server.services.events.service import (
    SELF_TYPES,
    events_query,
    list_events,
    list_for,
    record,
    singular,
    visible_events_condition,
)

__all__ = [
    "SELF_TYPES",
    "events_query",
    "list_events",
    "list_for",
    "record",
    "singular",
    "visible_events_condition",
]
