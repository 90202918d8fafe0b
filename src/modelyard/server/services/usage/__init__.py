"""What a user has used and has left: quota views over the ledger and the files index."""

from modelyard.server.services.usage.views import (
    BLOCK_BYTES,
    STORAGE_OFF,
    UNLIMITED,
    measure_storage,
    quota_view,
    remain_resource,
    storage_remain,
    storage_view,
)

__all__ = [
    "BLOCK_BYTES",
    "STORAGE_OFF",
    "UNLIMITED",
    "measure_storage",
    "quota_view",
    "remain_resource",
    "storage_remain",
    "storage_view",
]
