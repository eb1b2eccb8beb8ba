"""Property-based fuzz of the server's OpenAPI schema (schemathesis): whatever a client sends to any route,
the answer is never a 500, and every error is JSON (TEI's shape, or OpenAI's under /v1). Runs the app
in-process (the app `m3rt serve` runs); the operations are driven with hypothesis directly (schemathesis'
pytest plugin does not load under this pytest)."""

from __future__ import annotations

import pytest

schemathesis = pytest.importorskip("schemathesis")
pytest.importorskip("fastapi")
pytest.importorskip("prometheus_client")
from hypothesis import HealthCheck, given, settings  # noqa: E402


@pytest.fixture(scope="module")
def api_schema(tiny_artifact):
    from m3rt import M3Runtime
    from m3rt.serve import ServeConfig
    from m3rt.serve.app import create_app

    app = create_app(M3Runtime(tiny_artifact), ServeConfig(max_texts_per_request=16))
    return schemathesis.openapi.from_asgi("/openapi.json", app)


def test_no_route_answers_500(api_schema):
    operations = [op.ok() for op in api_schema.get_all_operations()]
    assert len(operations) >= 10
    seen = []
    for operation in operations:
        @given(case=operation.as_strategy())
        @settings(max_examples=15, deadline=None, suppress_health_check=list(HealthCheck), database=None)
        def fuzz(case):
            response = case.call()
            seen.append(response.status_code)
            assert response.status_code < 500, (f"{case.method} {case.path} {case.body!r:.200} -> "
                                                 f"{response.status_code}: {response.text[:300]}")
            if response.status_code >= 400:
                body = response.json()
                if case.path.startswith("/v1/"):  # OpenAI's shape
                    assert body["error"]["message"] and body["error"]["type"]
                else:
                    assert "error" in body and "error_type" in body

        fuzz()
    assert len(seen) >= 50 and any(code < 300 for code in seen) and any(code >= 400 for code in seen)
