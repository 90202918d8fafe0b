"""1 GiB resumable upload through HTTP vs dd of 1 GiB to the same disk (ratio >= 0.7), server peak RSS < 150 MiB.

A real `modelyard server` subprocess (its own MODELYARD_HOME under bench/out/, or
MODELYARD_BENCH_DIR) receives a 1 GiB file of random bytes through the SDK's resumable upload
(64 MiB chunks, streaming request bodies); the measured time runs from opening the session to
the completed (SHA-256 verified, fsync'ed, renamed, indexed) file. The peer is
`dd if=/dev/zero of=<same dir> bs=1M count=1024 conv=fsync`. Shared disks and CPUs are noisy, so
the run interleaves ROUNDS uploads with dd runs (dd, upload, dd, upload, ..., dd): each round's
ratio is its upload against the mean of the dd runs on either side, and the verdict uses the
median round. The server's RSS is sampled with psutil every 20 ms during the uploads. The client's
own SHA-256 pass (needed to open the session) is reported apart.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

import httpx
import psutil

SIZE = 1024**3
CHUNK = 64 * 1024**2
TOKEN = "my_bench_admin_token"
MIB = 1024**2
PARALLEL = int(os.environ.get("MODELYARD_BENCH_PARALLEL", "1"))
ROUNDS = int(os.environ.get("MODELYARD_BENCH_ROUNDS", "3"))


def _free_port() -> int:
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _dd(target: Path) -> float:
    t = time.perf_counter()
    subprocess.run(["dd", "if=/dev/zero", f"of={target}", "bs=1M", "count=1024", "conv=fsync"], check=True,
                   capture_output=True)
    elapsed = time.perf_counter() - t
    target.unlink()
    return SIZE / elapsed


def _make_source(path: Path) -> None:
    block = os.urandom(16 * MIB)
    with open(path, "wb") as f:
        for i in range(SIZE // len(block)):
            # vary each block a little so the data is not a repeating pattern
            f.write(i.to_bytes(8, "little") + block[8:])
        f.flush()
        os.fsync(f.fileno())


class _RSS(threading.Thread):
    def __init__(self, pid: int):
        super().__init__(daemon=True)
        self.proc = psutil.Process(pid)
        self.peak = 0
        self.samples = 0
        self.stop = threading.Event()

    def run(self) -> None:
        while not self.stop.is_set():
            try:
                self.peak = max(self.peak, self.proc.memory_info().rss)
                self.samples += 1
            except psutil.Error:
                return
            time.sleep(0.02)


def run() -> bool:
    base = Path(os.environ.get("MODELYARD_BENCH_DIR") or Path(__file__).parent / "out")
    base.mkdir(parents=True, exist_ok=True)
    work = Path(tempfile.mkdtemp(prefix="upload-", dir=base))
    home = work / "home"
    port = _free_port()
    env = {**os.environ, "MODELYARD_HOME": str(home), "MODELYARD_SCHEMA_MODE": "create_all",
           "MODELYARD_ADMIN_TOKEN": TOKEN, "MODELYARD_BACKGROUND": "false"}
    env.pop("MODELYARD_DATABASE_URL", None)
    server = None
    try:
        free = shutil.disk_usage(base).free
        if free < 3.5 * SIZE:
            print(f"  not enough free space under {base} ({free / 2**30:.1f} GiB, need 3.5)")
            return False
        src = work / "source.bin"
        _make_source(src)
        log = open(work / "server.log", "wb")
        server = subprocess.Popen([sys.executable, "-m", "modelyard.cli.main", "server", "--host", "127.0.0.1",
                                   "--port", str(port)], env=env, stdout=log, stderr=subprocess.STDOUT)
        url = f"http://127.0.0.1:{port}"
        deadline = time.time() + 120
        while True:
            try:
                if httpx.get(url + "/healthz", timeout=1).status_code == 200:
                    break
            except httpx.HTTPError:
                pass
            if time.time() > deadline or server.poll() is not None:
                print("  server did not start:", (work / "server.log").read_text()[-2000:])
                return False
            time.sleep(0.2)

        from modelyard.sdk import Client
        from modelyard.sdk.files import sha256_file

        client = Client(url, TOKEN, timeout=300)
        me = client.users.me()["id"]
        sproc = psutil.Process(server.pid)
        idle_rss = sproc.memory_info().rss
        t = time.perf_counter()
        digest = sha256_file(src)
        hash_s = time.perf_counter() - t

        dds = [_dd(work / "dd.bin")]
        ups, peak, ok_data, cpu = [], 0, True, []
        for r in range(ROUNDS):
            rss = _RSS(server.pid)
            rss.start()
            c0 = sproc.cpu_times()
            t = time.perf_counter()
            entry = client.files.upload(src, f"Model/bench{r}.bin", chunk_size=CHUNK, sha256=digest,
                                        parallel=PARALLEL)
            ups.append(SIZE / (time.perf_counter() - t))
            rss.stop.set()
            rss.join()
            c1 = sproc.cpu_times()
            cpu.append((c1.user - c0.user, c1.system - c0.system))
            peak = max(peak, rss.peak)
            stored = home / "data" / "users" / me / "Model" / f"bench{r}.bin"
            ok_data = ok_data and entry["sha256"] == digest and stored.stat().st_size == SIZE
            client.files.delete(f"Model/bench{r}.bin")
            dds.append(_dd(work / "dd.bin"))

        ratios = [ups[i] / ((dds[i] + dds[i + 1]) / 2) for i in range(ROUNDS)]
        order = sorted(range(ROUNDS), key=lambda i: ratios[i])
        mid = order[len(order) // 2]
        ratio = ratios[mid]
        print(f"  dd (conv=fsync) to {base}, MiB/s: " + ", ".join(f"{d / MIB:.0f}" for d in dds))
        print(f"  resumable upload via HTTP ({CHUNK // MIB} MiB chunks, {PARALLEL} in flight), session open -> "
              f"verified file in place, MiB/s: " + ", ".join(f"{u / MIB:.0f}" for u in ups))
        print("  server CPU per upload (user/sys s): " + ", ".join(f"{u:.1f}/{s_:.1f}" for u, s_ in cpu))
        print("  ratio upload/dd per round: " + ", ".join(f"{x:.2f}" for x in ratios)
              + f"; median round: {ups[mid] / MIB:.0f} vs {(dds[mid] + dds[mid + 1]) / 2 / MIB:.0f} MiB/s "
              f"= {ratio:.2f} (target >= 0.7)")
        e2e = SIZE / (SIZE / ups[mid] + hash_s)
        print(f"  client SHA-256 pass: {hash_s:.2f} s; end to end incl. it (median round): {e2e / MIB:.0f} MiB/s "
              f"(ratio {e2e / ((dds[mid] + dds[mid + 1]) / 2):.2f})")
        print(f"  server RSS: idle {idle_rss / MIB:.0f} MiB, peak during uploads {peak / MIB:.0f} MiB "
              f"(+{(peak - idle_rss) / MIB:.0f} MiB; target < 150 MiB)")
        print(f"  stored files verified: {ok_data}")
        return ok_data and ratio >= 0.7 and peak / MIB < 150
    finally:
        if server is not None and server.poll() is None:
            server.terminate()
            try:
                server.wait(15)
            except subprocess.TimeoutExpired:
                server.kill()
        shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    sys.exit(0 if run() else 1)
