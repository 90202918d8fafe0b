"""Schemathesis over the app's own /openapi.json (every operation, native and seed): generated
requests, as the admin, must never answer 5xx, and (for schema-valid requests) the response must
match the declared response schema. Bounded and deterministic: a few examples per operation,
derandomized; jobs are only queued (the test app runs no scheduler), so nothing is launched.

Schemathesis' own pytest plugin (`schema.parametrize`) does not run on this pytest, so the
operations are driven here: one hypothesis test per operation, every failure collected and
reported together."""

from __future__ import annotations

import time
import warnings

import pytest

schemathesis = pytest.importorskip("schemathesis")

import hypothesis.errors  # noqa: E402
import requests  # noqa: E402
from hypothesis import HealthCheck, Phase, given, settings  # noqa: E402
from schemathesis import GenerationMode  # noqa: E402
from schemathesis.checks import not_a_server_error  # noqa: E402
from schemathesis.specs.openapi.checks import response_schema_conformance  # noqa: E402

EXAMPLES = 5
BUDGET_S = 150  # per mode; the whole run stays well under ~3 minutes on 2 cores


def _send(tc, case, headers: dict):
    """The case as the requests transport would send it, through the in-process TestClient."""
    kw = case.as_transport_kwargs(base_url="http://testserver", headers=headers)
    if "content" in kw:
        kw["data"] = kw.pop("content")
    prepared = requests.Request(**{k: v for k, v in kw.items()
                                   if k in ("method", "url", "params", "headers", "json", "data", "files")}).prepare()
    body = prepared.body.encode() if isinstance(prepared.body, str) else prepared.body
    return tc.request(prepared.method, prepared.url, headers=dict(prepared.headers), content=body)


def _run(admin, mode: GenerationMode, checks: list) -> list[str]:
    schema = schemathesis.openapi.from_dict(admin.get("/openapi.json").json())
    failures: list[str] = []
    started = time.monotonic()
    ran = 0
    for result in schema.get_all_operations():
        op = result.ok()

        @given(case=op.as_strategy(generation_mode=mode))
        @settings(max_examples=EXAMPLES, derandomize=True, deadline=None, database=None,
                  suppress_health_check=list(HealthCheck), phases=[Phase.explicit, Phase.generate])
        def check(case):
            case.validate_response(_send(admin.tc, case, admin.headers), checks=checks)

        try:
            with warnings.catch_warnings():
                warnings.simplefilter("ignore")
                check()
            ran += 1
        except hypothesis.errors.Unsatisfiable:  # negative mode: nothing of this operation can be made invalid
            ran += 1
        except (Exception, BaseExceptionGroup) as exc:  # noqa: BLE001 - every failure is reported
            ran += 1
            failures.append(f"{op.label}: {str(exc)[:1500]}")
        assert time.monotonic() - started < BUDGET_S, f"schemathesis run over budget after {ran} operations"
    assert ran > 100, f"only {ran} operations in the schema"
    return failures


@pytest.fixture
def st_admin(app_client):
    """The admin against an app whose server errors come back as 500 responses (the check sees them)."""
    from fastapi.testclient import TestClient

    from tests.conftest import _admin_of

    tc = TestClient(app_client.app, raise_server_exceptions=False)
    return _admin_of(tc)


def test_valid_requests_get_no_5xx_and_conforming_responses(st_admin):
    failures = _run(st_admin, GenerationMode.POSITIVE, [not_a_server_error, response_schema_conformance])
    assert not failures, "\n\n".join(failures)


def test_invalid_requests_get_no_5xx(st_admin):
    failures = _run(st_admin, GenerationMode.NEGATIVE, [not_a_server_error])
    assert not failures, "\n\n".join(failures)
