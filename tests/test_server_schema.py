"""Schema fuzzing: schemathesis draws requests from the server's own /openapi.json (valid and invalid ones) against a
live server; no answer may be an undocumented status (a 500 among them), nor break the schema it documents. A
request the schema allows may still be refused with a documented 4xx (two values of one group, a query without
objects), so the check that schema-valid data is always accepted is left out."""


import pytest
import schemathesis
from schemathesis.checks import positive_data_acceptance
from hypothesis import HealthCheck, settings

from .conftest import live_server

@pytest.fixture(scope="module")
def live_schema(exported_best):
    command = ["cli.py", "serve", "--port", "{port}", "--device", "cpu", "--model", str(exported_best / "generator.onnx")]
    with live_server(command) as (_, port):
        yield schemathesis.openapi.from_url(f"http://127.0.0.1:{port}/openapi.json")


schema = schemathesis.pytest.from_fixture("live_schema")


@pytest.mark.slow
@schema.parametrize()
@settings(max_examples=60, deadline=None, suppress_health_check=list(HealthCheck))
def test_no_request_drawn_from_the_schema_breaks_the_server_or_its_schema(case):
    case.call_and_validate(excluded_checks=[positive_data_acceptance])
