"""Hyperparameter searches (seed 002: bayes_opt / tpe / anneal, plus random and grid) and their
trials. Each trial is a real job (jobs.search_id / origin "search").

Optuna's state lives in these two tables, not in Optuna's own RDBStorage: every driver step
rebuilds an in-memory Optuna study from search_trials (params, distributions, system attrs,
intermediate values, outcome) and asks / prunes / tells in the same database transaction that
submits or cancels the trial jobs. So a trial row and its job are created (or not) together, the
search survives a server kill -9 at any point, both SQLite and PostgreSQL work under the
platform's own locking, and the schema stays entirely under Alembic (Optuna's RDBStorage would add
a dozen tables of its own outside the migrations, and a second connection pool competing for
SQLite's write lock)."""

from __future__ import annotations

from datetime import datetime

from sqlalchemy import JSON, DateTime, Float, ForeignKey, Integer, String, Text, UniqueConstraint
from sqlalchemy.orm import Mapped, mapped_column

from .base import Base, IdMixin, TimestampMixin, utcnow

SEARCH_ACTIVE_STATES = ("running",)
TRIAL_ACTIVE_STATES = ("running",)


class SearchModel(IdMixin, TimestampMixin, Base):
    __tablename__ = "searches"

    owner_id: Mapped[str] = mapped_column(ForeignKey("users.id"), index=True, nullable=False)
    name: Mapped[str] = mapped_column(String(128), nullable=False)
    description: Mapped[str] = mapped_column(String(1024), default="")
    state: Mapped[str] = mapped_column(String(16), default="running", index=True)  # running|succeeded|failed|cancelled
    algorithm: Mapped[str] = mapped_column(String(16), nullable=False)  # random|grid|tpe|bayes_opt|anneal
    algorithm_params: Mapped[dict] = mapped_column(JSON, default=dict)
    # what the sampler really is (e.g. bayes_opt without scipy: our GP-UCB sampler)
    sampler: Mapped[str] = mapped_column(String(64), default="")
    objective_metric: Mapped[str] = mapped_column(String(64), nullable=False)
    direction: Mapped[str] = mapped_column(String(8), nullable=False)  # minimize | maximize
    space: Mapped[list] = mapped_column(JSON, default=list)  # [{"name","type","low","high","log","step","choices"}]
    base: Mapped[dict] = mapped_column(JSON, default=dict)  # the JobSubmit body every trial starts from
    max_trials: Mapped[int] = mapped_column(Integer, nullable=False)
    parallel_trials: Mapped[int] = mapped_column(Integer, default=1)  # as requested
    early_stopping: Mapped[dict] = mapped_column(JSON, default=dict)
    seed: Mapped[int] = mapped_column(Integer, default=0)
    best_trial_id: Mapped[str | None] = mapped_column(String(32))
    best_value: Mapped[float | None] = mapped_column(Float)
    best_model_version_id: Mapped[str | None] = mapped_column(String(32))
    # the current parallelism bound and why (quota), refreshed by the driver
    parallel_bound: Mapped[int | None] = mapped_column(Integer)
    note: Mapped[str] = mapped_column(String(1024), default="")
    error: Mapped[str | None] = mapped_column(Text)
    cancel_requested_at: Mapped[datetime | None] = mapped_column(DateTime)
    finished_at: Mapped[datetime | None] = mapped_column(DateTime)


class SearchTrialModel(IdMixin, Base):
    __tablename__ = "search_trials"
    __table_args__ = (UniqueConstraint("search_id", "number", name="uq_search_trials_number"),)

    search_id: Mapped[str] = mapped_column(ForeignKey("searches.id", ondelete="CASCADE"), index=True, nullable=False)
    number: Mapped[int] = mapped_column(Integer, nullable=False)  # Optuna's trial number
    job_id: Mapped[str | None] = mapped_column(String(32), index=True)
    state: Mapped[str] = mapped_column(String(16), default="running")  # running|complete|pruned|failed|cancelled
    params: Mapped[dict] = mapped_column(JSON, default=dict)
    distributions: Mapped[dict] = mapped_column(JSON, default=dict)  # name -> optuna distribution JSON
    system_attrs: Mapped[dict] = mapped_column(JSON, default=dict)  # sampler bookkeeping (grid ids ...)
    intermediate: Mapped[dict] = mapped_column(JSON, default=dict)  # str(step) -> objective value
    value: Mapped[float | None] = mapped_column(Float)
    model_version_id: Mapped[str | None] = mapped_column(String(32))
    message: Mapped[str] = mapped_column(String(1024), default="")
    created_at: Mapped[datetime] = mapped_column(DateTime, default=utcnow)
    finished_at: Mapped[datetime | None] = mapped_column(DateTime)
