"""Resumable and multipart uploads into users' file roots."""

from modelyard.server.services.uploads.io import (
    LIVE,
    PIECE,
    forget,
    partial_path,
    start_writeback,
    tmp_dir,
    write_stream,
)
from modelyard.server.services.uploads.multipart import (
    MAX_FIELD_BYTES,
    Received,
    multipart_upload,
    receive_multipart,
)
from modelyard.server.services.uploads.service import (
    DEFAULT_CHUNK,
    MIN_CHUNK,
    InsufficientStorage,
    abort_upload,
    chunk_len,
    complete_upload,
    create_upload,
    expire_uploads,
    get_upload,
    list_uploads,
    receive_chunk,
    scope_of,
    upload_view,
)
from modelyard.server.services.uploads.states import (
    UPLOAD_DOOR,
    StaleState,
    move_upload,
)

__all__ = [
    "DEFAULT_CHUNK",
    "InsufficientStorage",
    "LIVE",
    "MAX_FIELD_BYTES",
    "MIN_CHUNK",
    "PIECE",
    "Received",
    "StaleState",
    "UPLOAD_DOOR",
    "abort_upload",
    "chunk_len",
    "complete_upload",
    "create_upload",
    "expire_uploads",
    "forget",
    "get_upload",
    "list_uploads",
    "move_upload",
    "multipart_upload",
    "partial_path",
    "receive_chunk",
    "receive_multipart",
    "scope_of",
    "start_writeback",
    "tmp_dir",
    "upload_view",
    "write_stream",
]
