"""Settings from MODELYARD_* environment variables (nested with '__', e.g. MODELYARD_QUOTA__CPU)."""

from __future__ import annotations

from pathlib import Path

from pydantic import BaseModel, Field
from pydantic_settings import BaseSettings, SettingsConfigDict


class DefaultQuota(BaseModel):
    """The quota a new user gets unless an admin sets another."""

    cpu: float = 8
    memory_mib: int = 16 * 1024
    gpu: int = 0
    vgpu: int = 0
    mig: int = 0
    jobs: int = 4
    storage_bytes: int | None = None  # None: storage quota not enabled (seed: 存储配额未开启)
    storage_files: int | None = None


class SchedulerSettings(BaseModel):
    poll_interval_s: float = 1.0
    cancel_grace_s: float = 10.0
    # priorities above this (and urgent jobs) need the admin role or a quota allowance
    priority_ceiling: int = 10
    # a job that does not fit lets smaller ones behind it start (backfill) until it has waited this long
    backfill_head_max_wait_s: float = 300.0


class SandboxSettings(BaseModel):
    """How job (and later serving) replicas are isolated: executors/sandbox.py, services/jobs/sandbox.py.

    mode: "auto" (bubblewrap when it works here; if it does not, only the admin's own jobs run,
    unsandboxed, and every other user's job is refused), "bwrap" (required: refuse every job without
    it) or "unsafe" (no sandbox for anyone: every user can read the server's secrets; an explicit
    choice for a single-user laptop)."""

    mode: str = "auto"
    # user names (or ids) whose jobs may ask for the host's network; an admin's own jobs may always
    network_users: list[str] = Field(default_factory=list)
    max_processes: int = 4096  # per replica (pids cgroup, where writable)
    max_open_files: int = 65536  # per process (RLIMIT_NOFILE)


class ServingSettings(BaseModel):
    """Inference services (services/serving). `runtime_argv` replaces the built-in transformers
    runtime's command for every replica (an operator's or a test's stand-in server); its items may
    name {socket}, {model} and {served_name}. Not settable by users."""

    runtime_argv: list[str] | None = None
    probe_interval_s: float = 2.0  # how often ready replicas' live_path is probed
    probe_timeout_s: float = 2.0
    live_failures_max: int = 3  # liveness probes failed in a row -> the replica is replaced
    version_failures_max: int = 3  # replicas failed before ever ready, in a row -> the version fails
    boot_timeout_s: float = 600.0  # transformers runtime: not ready within this -> the replica fails
    socket_root: Path | None = None  # default /tmp/modelyard-<8 hex of home> (sun_path < 108 bytes)


class Settings(BaseSettings):
    model_config = SettingsConfigDict(env_prefix="MODELYARD_", env_nested_delimiter="__", extra="ignore")

    home: Path = Field(default_factory=lambda: Path.home() / ".modelyard")
    database_url: str | None = None  # default: sqlite under home
    admin_token: str | None = None
    host: str = "127.0.0.1"
    port: int = 8600
    public_url: str | None = None
    upload_chunk_max_bytes: int = 64 * 1024 * 1024
    # per user: the total declared size of open upload sessions (409 open_uploads_limit)
    upload_open_max_bytes: int = 20 * 1024**3
    # free space kept on the uploads volume: a session or chunk below it answers 507 disk_full
    upload_free_space_floor_bytes: int = 1024**3
    # request bodies above this answer 413 body_too_large (upload chunks and parts are exempt)
    request_body_max_bytes: int = 16 * 1024 * 1024
    # a scrape-only token for /metrics; None: admin tokens only
    metrics_token: str | None = None
    quota: DefaultQuota = Field(default_factory=DefaultQuota)
    scheduler: SchedulerSettings = Field(default_factory=SchedulerSettings)
    sandbox: SandboxSettings = Field(default_factory=SandboxSettings)
    serving: ServingSettings = Field(default_factory=ServingSettings)
    # background loops (scheduler, reconcilers) can be switched off for unit tests
    background: bool = True
    # "migrate" (Alembic upgrade on start) or "create_all" (fast path used by most unit tests)
    schema_mode: str = "migrate"

    @property
    def db_url(self) -> str:
        return self.database_url or f"sqlite:///{self.home / 'modelyard.db'}"

    @property
    def data_dir(self) -> Path:
        return self.home / "data"

    @property
    def users_root(self) -> Path:
        """Private roots: <home>/data/users/<user_id>/."""
        return self.data_dir / "users"

    @property
    def public_root(self) -> Path:
        return self.data_dir / "public"

    @property
    def blobs_dir(self) -> Path:
        """Content-addressed OCI blobs (sha256/<hex>)."""
        return self.data_dir / "blobs"

    @property
    def registry_dir(self) -> Path:
        """Immutable model version files: <home>/data/registry/<model_id>/<version_id>/."""
        return self.data_dir / "registry"

    @property
    def datasets_dir(self) -> Path:
        return self.data_dir / "datasets"

    @property
    def uploads_dir(self) -> Path:
        """Partial resumable uploads (kept across restarts)."""
        return self.data_dir / "uploads"

    @property
    def jobs_dir(self) -> Path:
        return self.data_dir / "jobs"

    def ensure_dirs(self) -> None:
        """Create the data folders, private to the server's user (0700): jobs run sandboxed, but
        another OS user on the machine must not read the database or anyone's files either."""
        for d in (self.home, self.data_dir, self.users_root, self.public_root, self.blobs_dir, self.registry_dir,
                  self.datasets_dir, self.uploads_dir, self.jobs_dir):
            d.mkdir(parents=True, exist_ok=True, mode=0o700)
        self.home.chmod(0o700)
        self.data_dir.chmod(0o700)
