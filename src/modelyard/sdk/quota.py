"""`client.quota`: per-user compute and storage quotas (GET for all; set: admin)."""

from __future__ import annotations

from typing import Any

_UNSET: Any = object()


class API:
    def __init__(self, client):
        self.c = client

    def me(self) -> dict:
        """Limits, used (live allocations), remaining, jobs, window and storage of the caller."""
        return self.c.get("quotas/me")

    def get(self, user: str) -> dict:
        """A user's quota by id or name (admin, or yourself)."""
        return self.c.get(f"quotas/{user}")

    def list(self, *, storage: bool = False) -> list[dict]:
        return self.c.get("quotas", params={"storage": storage})

    def set(self, user: str, *, cpu: float | None = None, memory_mib: int | None = None, gpu: int | None = None,
            vgpu: int | None = None, mig: int | None = None, jobs: int | None = None, start_at: Any = _UNSET,
            end_at: Any = _UNSET, storage_bytes: Any = _UNSET, storage_files: Any = _UNSET) -> dict:
        """Admin: change the given fields only. start_at/end_at/storage_* accept None to clear
        (no bound / storage quota off); datetimes or "YYYY-MM-DD HH:MM:SS" strings, UTC."""
        body: dict[str, Any] = {k: v for k, v in {"cpu": cpu, "memory_mib": memory_mib, "gpu": gpu, "vgpu": vgpu,
                                                  "mig": mig, "jobs": jobs}.items() if v is not None}
        for k, v in {"start_at": start_at, "end_at": end_at, "storage_bytes": storage_bytes,
                     "storage_files": storage_files}.items():
            if v is not _UNSET:
                body[k] = v.isoformat() if hasattr(v, "isoformat") else v
        resp = self.c.request("PUT", f"quotas/{user}", json=body)
        return resp.json()

    def remain(self, user_id: str | None = None) -> dict:
        """Seed §8.1 getRemainResource `result` (remainCpu, remainMemory GiB, ...)."""
        return self.c.post("/system/config/getRemainResource", json={"userId": user_id or ""})["result"]

    def storage_remain(self, user_id: str | None = None) -> dict:
        """Seed §8.2 getQuotaRemainResource `result` (inode*/block*; blocks are 1 KiB)."""
        return self.c.post("/resource/configRemake/getQuotaRemainResource",
                           json={"userId": user_id or "", "uId": None})["result"]
