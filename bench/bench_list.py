"""List/page APIs with 10k models (+1 version each) and 100k files on SQLite: p99 < 50 ms.

A real server (uvicorn subprocess, SQLite in a temp MODELYARD_HOME) is seeded directly through
ORM bulk inserts, then each paging API is called at random pages over HTTP. The bare peer is the
same page read with a raw SQLite SELECT ... LIMIT/OFFSET in the same run; the ratio says how much
the API adds over the database alone. BENCH_MODELS / BENCH_FILES / BENCH_REQUESTS change the sizes;
BENCH_KEEP=1 keeps the temp home; BENCH_SCHEMA_MODE=migrate uses the Alembic migrations instead of
create_all (same tables and indexes once the migrations are current)."""

from __future__ import annotations

import os
import random
import shutil
import socket
import sqlite3
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from datetime import timedelta
from pathlib import Path

import httpx

N_MODELS = int(os.environ.get("BENCH_MODELS", 10_000))
N_FILES = int(os.environ.get("BENCH_FILES", 100_000))
REQUESTS = int(os.environ.get("BENCH_REQUESTS", 300))
TARGET_P99_MS = 50.0
TOKEN = "my_bench_admin_token"
SEED = 1234


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _pct(values: list[float], p: float) -> float:
    v = sorted(values)
    k = min(len(v) - 1, max(0, int(round(p / 100 * (len(v) - 1)))))
    return v[k]


def _start_server(home: Path, port: int) -> subprocess.Popen:
    env = {**os.environ, "MODELYARD_HOME": str(home), "MODELYARD_ADMIN_TOKEN": TOKEN,
           "MODELYARD_BACKGROUND": "false", "MODELYARD_SCHEMA_MODE": os.environ.get("BENCH_SCHEMA_MODE", "create_all"),
           "MODELYARD_DATABASE_URL": f"sqlite:///{home / 'modelyard.db'}"}
    code = ("import uvicorn; from modelyard.server.app import create_app; "
            f"uvicorn.run(create_app(), host='127.0.0.1', port={port}, log_level='warning')")
    proc = subprocess.Popen([sys.executable, "-c", code], env=env)
    deadline = time.time() + 120
    while time.time() < deadline:
        try:
            if httpx.get(f"http://127.0.0.1:{port}/healthz", timeout=1).status_code == 200:
                return proc
        except httpx.HTTPError:
            pass
        if proc.poll() is not None:
            raise RuntimeError(f"server exited with {proc.returncode}")
        time.sleep(0.2)
    proc.kill()
    raise RuntimeError("server did not start")


def _seed_models(db_url: str, owner_id: str) -> None:
    from sqlalchemy import insert

    from modelyard.core.ids import new_id
    from modelyard.server.db import make_engine, make_sessionmaker, session_scope
    from modelyard.server.orm.base import utcnow
    from modelyard.server.orm.models import ModelModel, ModelVersionModel

    engine = make_engine(db_url)
    t0 = utcnow() - timedelta(days=30)
    models, versions = [], []
    for i in range(N_MODELS):
        mid = new_id()
        at = t0 + timedelta(seconds=i * 7)
        models.append({"id": mid, "owner_id": owner_id, "name": f"model-{i:05d}", "description": f"bench model {i}",
                       "type": "LLM", "developer": "bench", "is_public": i % 50 == 0, "created_at": at,
                       "updated_at": at})
        versions.append({"id": new_id(), "model_id": mid, "owner_id": owner_id, "version": "1", "status": "done",
                         "source": 3, "save_type": 2, "format": "hf", "architecture": "LlamaForCausalLM",
                         "model_type": "llama", "parameters": 134_515_008, "dtype": "bfloat16",
                         "context_length": 8192, "size_bytes": 269_060_552, "scale": "135M",
                         "files": [{"path": "model.safetensors", "size": 269_060_552, "sha256": "0" * 64}],
                         "details": {}, "hyper_parameter_list": [], "metrics": {}, "path": f"/registry/{mid}",
                         "created_at": at, "updated_at": at, "finished_at": at})
    with session_scope(make_sessionmaker(engine)) as s:
        for a in range(0, N_MODELS, 2000):
            s.execute(insert(ModelModel), models[a:a + 2000])
            s.execute(insert(ModelVersionModel), versions[a:a + 2000])
    engine.dispose()


def _seed_files(db_url: str, home: Path, owner_id: str, folder: str) -> None:
    from sqlalchemy import delete, insert

    from modelyard.server.db import make_engine, make_sessionmaker, session_scope
    from modelyard.server.orm.base import utcnow
    from modelyard.server.orm.files import FileModel, FileRootModel

    (home / "data" / "users" / owner_id / folder).mkdir(parents=True, exist_ok=True)
    engine = make_engine(db_url)
    now = utcnow()
    parent, name = folder.rsplit("/", 1) if "/" in folder else ("", folder)
    with session_scope(make_sessionmaker(engine)) as s:
        s.execute(delete(FileModel).where(FileModel.root == owner_id, FileModel.path == folder))
        s.execute(insert(FileModel), [{"root": owner_id, "path": folder, "parent": parent, "name": name,
                                       "is_dir": True, "size": 0, "mtime": now, "owner_id": owner_id,
                                       "created_at": now}])
        rows = [{"root": owner_id, "path": f"{folder}/part-{i:06d}.jsonl", "parent": folder,
                 "name": f"part-{i:06d}.jsonl", "is_dir": False, "size": 1000 + i, "mtime": now,
                 "owner_id": owner_id, "created_at": now} for i in range(N_FILES)]
        for a in range(0, N_FILES, 5000):
            s.execute(insert(FileModel), rows[a:a + 5000])
        if s.get(FileRootModel, owner_id) is None:
            s.add(FileRootModel(root=owner_id))
    engine.dispose()


def _measure(name: str, call: Callable[[int], None], pages: list[int], raw: Callable[[int], None]) -> dict:
    for p in pages[:20]:  # warm-up: connections, caches, first-query compilation
        call(p)
        raw(p)
    api, bare = [], []
    for p in pages:
        t = time.perf_counter()
        call(p)
        api.append((time.perf_counter() - t) * 1000)
        t = time.perf_counter()
        raw(p)
        bare.append((time.perf_counter() - t) * 1000)
    res = {"name": name, "p50": statistics.median(api), "p99": _pct(api, 99), "raw_p50": statistics.median(bare),
           "raw_p99": _pct(bare, 99)}
    res["ok"] = res["p99"] < TARGET_P99_MS
    print(f"  {name:<42} p50 {res['p50']:6.2f} ms  p99 {res['p99']:6.2f} ms (target < {TARGET_P99_MS:g})"
          f"  | raw SQLite p50 {res['raw_p50']:6.2f} ms p99 {res['raw_p99']:6.2f} ms"
          f"  | ratio p50 {res['p50'] / max(res['raw_p50'], 1e-6):5.1f}x p99 {res['p99'] / max(res['raw_p99'], 1e-6):5.1f}x"
          f"  {'OK' if res['ok'] else 'SLOW'}", flush=True)
    return res


def _files_route(http: httpx.Client) -> str | None:
    """The native directory listing route, if the files domain has one."""
    paths = http.get("/openapi.json").json().get("paths", {})
    for cand in ("/api/v1/files", "/api/v1/files/list", "/api/v1/files/ls"):
        if "get" in paths.get(cand, {}):
            return cand
    return None


def run() -> bool:
    rng = random.Random(SEED)
    tmp = Path(tempfile.mkdtemp(prefix="modelyard-bench-list-"))
    home = tmp / "home"
    db_url = f"sqlite:///{home / 'modelyard.db'}"
    port = _free_port()
    print(f"  seeding {N_MODELS} models (+1 version each) and {N_FILES} files into {home}", flush=True)
    proc = _start_server(home, port)
    results = []
    try:
        base = f"http://127.0.0.1:{port}"
        admin = httpx.Client(base_url=base, headers={"Authorization": f"Bearer {TOKEN}"}, timeout=60)
        user = admin.post("/api/v1/users", json={"name": "bench"}).json()
        http = httpx.Client(base_url=base, headers={"Authorization": f"Bearer {user['token']}"}, timeout=60)
        t = time.time()
        _seed_models(db_url, user["id"])
        folder = "Data/bulk"
        _seed_files(db_url, home, user["id"], folder)
        print(f"  seeded in {time.time() - t:.1f}s", flush=True)

        raw = sqlite3.connect(str(home / "modelyard.db"))
        uid = user["id"]
        plan = raw.execute("EXPLAIN QUERY PLAN SELECT * FROM models WHERE owner_id = ? OR is_public = 1 "
                           "ORDER BY created_at DESC, id DESC LIMIT 20 OFFSET 0", (uid,)).fetchall()
        print("  models page query plan: " + "; ".join(r[-1] for r in plan), flush=True)
        print(f"  load average before measuring: {os.getloadavg()[0]:.2f} on {os.cpu_count()} CPUs", flush=True)

        size = 20
        pages = [rng.randint(1, (N_MODELS + size - 1) // size) for _ in range(REQUESTS)]

        def native(p: int) -> None:
            r = http.get("/api/v1/models", params={"page": p, "page_size": size})
            assert r.status_code == 200 and len(r.json()["items"]) == size, r.text[:300]

        def raw_models_page(p: int, n: int) -> None:
            # what the page needs from the database: the total, the visible rows of the page and their versions
            raw.execute("SELECT count(*) FROM models WHERE owner_id = ? OR is_public = 1", (uid,)).fetchone()
            rows = raw.execute("SELECT * FROM models WHERE owner_id = ? OR is_public = 1 "
                               "ORDER BY created_at DESC, id DESC LIMIT ? OFFSET ?",
                               (uid, n, (p - 1) * n)).fetchall()
            ids = [r[0] for r in rows]
            raw.execute(f"SELECT * FROM model_versions WHERE model_id IN ({','.join('?' * len(ids))})",
                        ids).fetchall()

        results.append(_measure("GET /api/v1/models (20/page)", native, pages, lambda p: raw_models_page(p, size)))

        seed_size = 10
        seed_pages = [rng.randint(1, (N_MODELS + seed_size - 1) // seed_size) for _ in range(REQUESTS)]

        def seed_list(p: int) -> None:
            r = http.post("/model/aiApplication/getAiApplicationList",
                          json={"pageNum": p, "pageSize": seed_size, "queryInfo": {}})
            assert r.status_code == 200 and len(r.json()["data"]["list"]) == seed_size, r.text[:300]

        results.append(_measure("POST getAiApplicationList (10/page)", seed_list, seed_pages,
                                lambda p: raw_models_page(p, seed_size)))

        route = _files_route(http)
        if route is None:
            print("  files list: no native listing route mounted yet (files domain) -- not measured", flush=True)
            results.append({"name": "files list", "ok": False})
        else:
            fsize = 100
            fpages = [rng.randint(1, N_FILES // fsize) for _ in range(REQUESTS)]

            def files_list(p: int) -> None:
                r = http.get(route, params={"path": folder, "page": p, "page_size": fsize})
                assert r.status_code == 200 and len(r.json()["items"]) == fsize, r.text[:300]

            def raw_files(p: int) -> None:
                raw.execute("SELECT count(*) FROM files WHERE root = ? AND parent = ?", (uid, folder)).fetchone()
                raw.execute("SELECT * FROM files WHERE root = ? AND parent = ? ORDER BY name LIMIT ? OFFSET ?",
                            (uid, folder, fsize, (p - 1) * fsize)).fetchall()

            results.append(_measure(f"GET {route} (100/page of 100k)", files_list, fpages, raw_files))

            # the same directory paged by keyset (after=<last name of the previous page>)
            def files_after(p: int) -> None:
                r = http.get(route, params={"path": folder, "after": f"part-{p * fsize - 1:06d}.jsonl",
                                            "page_size": fsize})
                assert r.status_code == 200 and len(r.json()["items"]) == fsize, r.text[:300]

            def raw_after(p: int) -> None:
                raw.execute("SELECT count(*) FROM files WHERE root = ? AND parent = ?", (uid, folder)).fetchone()
                raw.execute("SELECT * FROM files WHERE root = ? AND parent = ? AND name > ? ORDER BY name LIMIT ?",
                            (uid, folder, f"part-{p * fsize - 1:06d}.jsonl", fsize)).fetchall()

            kpages = [rng.randint(1, N_FILES // fsize - 1) for _ in range(REQUESTS)]
            results.append(_measure(f"GET {route}?after= (keyset, 100/page)", files_after, kpages, raw_after))
        raw.close()
    finally:
        proc.terminate()
        try:
            proc.wait(timeout=20)
        except subprocess.TimeoutExpired:
            proc.kill()
        if not os.environ.get("BENCH_KEEP"):
            shutil.rmtree(tmp, ignore_errors=True)
    ok = all(r["ok"] for r in results)
    print(f"  overall: {'PASS' if ok else 'FAIL'} (p99 < {TARGET_P99_MS:g} ms on every paging API)", flush=True)
    return ok


if __name__ == "__main__":
    sys.exit(0 if run() else 1)
