"""One addressing rule for every object kind (services/common/refs.py): full id, unique id prefix
(>= 4), name (own first, newest for jobs), `name:version` / alias for versions; an ambiguous prefix
is 409 with the candidates; another user's private object by name is 404."""

from __future__ import annotations

from pathlib import Path

import pytest
from sqlalchemy import text

from modelyard.server.db import session_scope

API = "/api/v1"


@pytest.fixture(scope="module")
def tiny_model(tmp_path_factory) -> Path:
    from modelyard.runtime import tiny

    return tiny.build_model(tmp_path_factory.mktemp("tiny"))


def _by_all_refs(user, base: str, obj: dict, name_key: str = "name") -> None:
    for ref in (obj["id"], obj["id"][:6], obj[name_key]):
        r = user.get(f"{base}/{ref}")
        assert r.status_code == 200, (ref, r.text)
        assert r.json()["id"] == obj["id"]


def test_jobs_by_name_prefix_and_newest_of_a_repeated_name(alice, bob, submit_custom):
    first = submit_custom(alice, "true", name="nightly")
    second = submit_custom(alice, "true", name="nightly")
    assert alice.get(f"{API}/jobs/nightly").json()["id"] == second["id"]  # a repeated name: the newest
    for ref in (first["id"], first["id"][:5]):
        assert alice.get(f"{API}/jobs/{ref}").json()["id"] == first["id"]
    # bob cannot reach alice's job by name, prefix or id
    for ref in ("nightly", first["id"][:6], first["id"]):
        r = bob.get(f"{API}/jobs/{ref}")
        assert r.status_code == 404 and r.json()["error"]["code"] == "not_found", ref
    assert alice.post(f"{API}/jobs/nightly/cancel").json()["id"] == second["id"]
    assert alice.get(f"{API}/jobs/{second['id']}").json()["state"] == "cancelled"
    # a prefix shorter than 4 characters names nothing
    assert alice.get(f"{API}/jobs/{first['id'][:3]}").status_code == 404


def test_ambiguous_prefix_is_409_with_candidates(alice, ctx_of):
    ids = []
    for name in ("m-one", "m-two"):
        r = alice.post(f"{API}/models", json={"name": name})
        assert r.status_code == 201, r.text
        ids.append(r.json()["id"])
    # give both the same first 6 characters (ids are random; the rule is what is tested)
    with session_scope(ctx_of(alice).sessions) as s:
        for i, old in enumerate(ids):
            s.execute(text("UPDATE models SET id = :new WHERE id = :old"),
                      {"new": "abcdef" + str(i) + old[7:], "old": old})
    r = alice.get(f"{API}/models/abcdef")
    assert r.status_code == 409, r.text
    err = r.json()["error"]
    assert err["code"] == "ambiguous_reference"
    assert sorted(c["name"] for c in err["details"]["candidates"]) == ["m-one", "m-two"]
    assert alice.get(f"{API}/models/abcdef1").json()["name"] == "m-two"


def test_models_and_versions_by_name_version_alias_and_prefix(alice, bob, settings, ctx_of, tiny_model):
    from modelyard.server.services import models

    with session_scope(ctx_of(alice).sessions) as s:
        v = models.register_version(s, settings, owner_id=alice.id, model_name="tiny", source_dir=tiny_model,
                                    source=3)
        vid, mid = v.id, v.model_id
    assert alice.put(f"{API}/models/tiny/aliases/prod", json={"version": "1"}).status_code == 200
    _by_all_refs(alice, f"{API}/models", {"id": mid, "name": "tiny"})
    for ref in ("tiny:1", "tiny:prod", vid, vid[:7], f"{mid[:5]}:1"):
        r = alice.get(f"{API}/model-versions/{ref}")
        assert r.status_code == 200 and r.json()["id"] == vid, (ref, r.text)
    assert alice.get(f"{API}/model-versions/resolve", params={"ref": "tiny:prod"}).json()["id"] == vid
    assert alice.get(f"{API}/models/tiny/versions/{vid[:6]}").json()["id"] == vid
    assert alice.get(f"{API}/model-versions/tiny:2").status_code == 404
    for ref in ("tiny", mid[:6]):
        assert bob.get(f"{API}/models/{ref}").status_code == 404
    assert bob.get(f"{API}/model-versions/tiny:1").status_code == 404


def test_datasets_images_by_name_and_prefix(alice, bob, settings):
    from modelyard.runtime import tiny

    tiny.write_jsonl(settings.users_root / alice.id / "Data" / "train" / "t.jsonl", tiny.alpaca_rows(4))
    ds = alice.post(f"{API}/datasets", json={"name": "colors", "path": "Data"})
    assert ds.status_code == 201, ds.text
    ds = ds.json()
    _by_all_refs(alice, f"{API}/datasets", ds)
    vid = alice.get(f"{API}/datasets/colors/versions").json()[0]["id"]
    for ref in ("1", "latest", vid, vid[:6]):
        assert alice.get(f"{API}/datasets/{ds['id'][:6]}/versions/{ref}").json()["id"] == vid, ref
    img = alice.post(f"{API}/images", json={"name": "base"}).json()
    _by_all_refs(alice, f"{API}/images", img)
    for ref in ("colors", ds["id"][:6]):
        assert bob.get(f"{API}/datasets/{ref}").status_code == 404
    assert bob.get(f"{API}/images/base").status_code == 404
    # bob's own object of the same name wins for bob
    mine = bob.post(f"{API}/images", json={"name": "base"}).json()
    assert bob.get(f"{API}/images/base").json()["id"] == mine["id"]
    assert alice.get(f"{API}/images/base").json()["id"] == img["id"]


def test_users_flavors_and_resource_groups(admin, alice):
    for ref in (alice.id, alice.id[:6], "alice"):
        assert admin.get(f"{API}/users/{ref}").json()["id"] == alice.id
    assert alice.get(f"{API}/users/alice").status_code == 403
    f = admin.post(f"{API}/flavors", json={"name": "cpu.small", "cpu": 2, "memory_mib": 4096}).json()
    _by_all_refs(alice, f"{API}/flavors", f)
    g = admin.post(f"{API}/resource-groups", json={"name": "Training", "key": "train"}).json()
    for ref in (g["id"], g["id"][:6], "train"):
        assert alice.get(f"{API}/resource-groups/{ref}").json()["id"] == g["id"], ref
    assert admin.get(f"{API}/flavors/nope").json()["error"]["code"] == "flavor_not_found"
