"""The executor tests start replica wrappers themselves (no app, so no `background` marker): every
wrapper a test left under its tmp_path (a failed assertion mid-run) is killed after it."""

from __future__ import annotations

import pytest

from tests import harness


@pytest.fixture(autouse=True)
def _kill_wrappers(tmp_path):
    yield
    for p in harness.job_processes(tmp_path):
        harness.kill_tree(p.pid)
