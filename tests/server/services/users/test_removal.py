"""Deleting a user (admin only): refused while the user has running work (listing it), force
cancels it first; the account's tokens stop working, its name is free again, its objects stay
(lineage others rely on never vanishes); an admin cannot delete itself."""

from __future__ import annotations

import pytest

pytestmark = [pytest.mark.background, pytest.mark.timeout(60)]
API = "/api/v1"


def test_user_delete_refuses_busy_then_force_cancels(admin, alice, bob, make_user, submit_custom, wait_state):
    assert bob.delete(f"{API}/users/alice").status_code == 403
    r = admin.delete(f"{API}/users/{admin.id}")
    assert r.status_code == 400 and r.json()["error"]["code"] == "cannot_delete_self"

    job = submit_custom(alice, "sleep 60", name="long")
    wait_state(alice, job["id"], "running")
    model = alice.post(f"{API}/models", json={"name": "kept", "is_public": True}).json()
    r = admin.delete(f"{API}/users/alice")
    assert r.status_code == 409 and r.json()["error"]["code"] == "user_busy"
    assert [j["name"] for j in r.json()["error"]["details"]["jobs"]] == ["long"]
    assert alice.get(f"{API}/users/me").status_code == 200  # nothing changed

    r = admin.delete(f"{API}/users/{alice.id[:6]}", params={"force": "true"})
    assert r.status_code == 204, r.text
    assert alice.get(f"{API}/users/me").status_code == 401  # every token revoked
    wait_state(admin, job["id"], "cancelled")
    assert admin.get(f"{API}/users/alice").status_code == 404
    # the model stays (public: others may build on it), owned by the closed account
    assert bob.get(f"{API}/models/{model['id']}").json()["name"] == "kept"
    # the name is free for a new account
    again = make_user("alice")
    assert again.id != alice.id
    assert admin.get(f"{API}/users/alice").json()["id"] == again.id


def test_idle_user_is_deleted_at_once(admin, bob):
    assert admin.delete(f"{API}/users/bob").status_code == 204
    assert bob.get(f"{API}/jobs").status_code == 401
    assert admin.delete(f"{API}/users/bob").status_code == 404


def test_tokens_revoked_by_name_or_prefix(alice, bob):
    made = alice.post(f"{API}/tokens", json={"name": "laptop"}).json()
    assert alice.delete(f"{API}/tokens/laptop").status_code == 204
    rows = {t["name"]: t for t in alice.get(f"{API}/tokens").json()}
    assert rows["laptop"]["revoked_at"] is not None
    ci = alice.post(f"{API}/tokens", json={"name": "ci"}).json()
    assert bob.delete(f"{API}/tokens/ci").status_code == 404  # not bob's
    assert alice.delete(f"{API}/tokens/{ci['id'][:6]}").status_code == 204
    assert alice.tc.get(f"{API}/users/me", headers={"Authorization": f"Bearer {ci['token']}"}).status_code == 401
    assert made["id"] != ci["id"]
