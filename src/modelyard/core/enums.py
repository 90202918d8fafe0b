"""Domain enums shared by the server, runtime, SDK and CLI."""

from enum import IntEnum, StrEnum


class Role(StrEnum):
    admin = "admin"
    user = "user"


class JobState(StrEnum):
    pending = "pending"
    queued = "queued"
    starting = "starting"
    running = "running"
    succeeded = "succeeded"
    failed = "failed"
    cancelled = "cancelled"

    @property
    def finished(self) -> bool:
        return self in (JobState.succeeded, JobState.failed, JobState.cancelled)


class ModelSource(IntEnum):
    """Seed §3.1 `source`: where a model version came from."""

    training = 1
    custom_image = 2
    local_files = 3


class ImportStatus(StrEnum):
    importing = "importing"
    done = "done"
    failed = "failed"
