"""Python client for Modelyard's native API: `from modelyard.sdk import Client`."""

from ._client import APIError, Client

__all__ = ["Client", "APIError"]
