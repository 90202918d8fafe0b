"""Seed 000 §8 (and §4.5) request bodies: remaining compute and storage quota."""

from __future__ import annotations

from pydantic import BaseModel, ConfigDict, Field


class RemainRequest(BaseModel):
    model_config = ConfigDict(extra="allow")

    userId: str | int | None = Field(None, description="the caller (admins: any user); empty: the caller")


class QuotaRemainRequest(BaseModel):
    model_config = ConfigDict(extra="allow", populate_by_name=True)

    userId: str | int | None = Field(None, description="the caller (admins: any user); empty: the caller")
    uId: str | int | None = Field(None, alias="uId", description="the Linux uid (accepted, not used: "
                                                                  "storage is accounted per platform user)")
