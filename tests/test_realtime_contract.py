"""`idr serve` keeps its OpenAPI contract: schemathesis generates requests from the service's own
schema, valid ones and invalid ones, and checks each answer: no server error, a documented status
code and content type, a body that matches the documented schema. Bounded: 40 requests per
operation and mode, a few seconds in all.

Schemathesis' pytest integration (``schemathesis.pytest.from_fixture``) fails on pytest 9.2 (it
sets ``Function._nodeid``, which pytest renamed), so the test drives its Python API: one
Hypothesis strategy per operation and generation mode.
"""

from __future__ import annotations

import pytest
import schemathesis
from hypothesis import HealthCheck, given, settings
from schemathesis import GenerationMode
from schemathesis.checks import not_a_server_error
from schemathesis.specs.openapi.checks import (
    content_type_conformance,
    response_schema_conformance,
    status_code_conformance,
)

from resolution.realtime.service import ResolveService, create_app
from tests.conftest import Server

CHECKS = [not_a_server_error, status_code_conformance, content_type_conformance, response_schema_conformance]
OPERATIONS = ["POST /v1/resolve", "GET /v1/entities/{entity_id}", "GET /health", "GET /metrics"]
EXAMPLES = settings(max_examples=40, deadline=None, derandomize=True, database=None,
                    suppress_health_check=list(HealthCheck))


@pytest.fixture(scope="module")
def server(published_sample, tmp_path_factory):
    config = published_sample(tmp_path_factory.mktemp("contract"), compact_every_commits=100)
    service = ResolveService(config)
    running = Server(create_app(config, service))
    yield running
    running.stop()


@pytest.fixture(scope="module")
def api(server):
    return schemathesis.openapi.from_url(f"{server.client.base_url}/openapi.json")


def test_every_operation_is_fuzzed(api):
    assert sorted(result.ok().label for result in api.get_all_operations()) == sorted(OPERATIONS)


@pytest.mark.parametrize(
    ("label", "mode"),
    [(label, GenerationMode.POSITIVE) for label in OPERATIONS]
    + [("POST /v1/resolve", GenerationMode.NEGATIVE)],  # the only one with an input that can be invalid
)
def test_every_answer_is_the_documented_one(api, label, mode):
    @given(case=api.find_operation_by_label(label).as_strategy(generation_mode=mode))
    @EXAMPLES
    def answer_as_documented(case):
        case.call_and_validate(checks=CHECKS)

    answer_as_documented()


def test_the_schema_states_the_limits_the_service_enforces(server):
    document = server.client.get("/openapi.json").json()
    request = document["components"]["schemas"]["ResolveRequest"]["properties"]
    assert (request["source"]["minLength"], request["source"]["maxLength"]) == (1, 500)
    assert request["data"]["propertyNames"]["enum"] == ["dob", "email", "first_name", "last_name", "loyalty_id", "phone"]
    paths = document["paths"]
    assert set(paths["/v1/resolve"]["post"]["responses"]) == {"200", "400", "503"}
    assert set(paths["/v1/entities/{entity_id}"]["get"]["responses"]) == {"200", "404", "503"}
    assert set(paths["/health"]["get"]["responses"]) == {"200", "503"}
    assert set(paths["/metrics"]["get"]["responses"]["200"]["content"]) == {"text/plain"}
    empty = server.client.post("/v1/resolve", json={"source": "", "source_id": "x", "data": {"email": "a@b.org"}})
    assert empty.status_code == 400 and "source: String should have at least 1 character" in empty.json()["error"]
    assert server.client.get("/metrics").headers["content-type"].startswith("text/plain")
    missing = server.client.get("/v1/nothing")
    assert missing.status_code == 404 and "error" in missing.json()


def test_an_entity_id_holding_a_slash_is_found(server):
    """A record key holds the caller's source_id, which may hold a "/" (sent as %2F)."""
    answer = server.resolve("web", "orders/17", email="slash@example.org").json()
    assert answer["entity_id"] == "online:web:orders/17"
    found = server.client.get("/v1/entities/online:web:orders%2F17")
    assert found.status_code == 200 and found.json()["pending"], found.text
