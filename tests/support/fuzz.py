"""Schemathesis against a running service's `/openapi.json`: every operation, valid and invalid cases, every
answer checked against the document (status declared, content type, body schema, headers) and never a 5xx."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field

import schemathesis
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from schemathesis import GenerationMode
from schemathesis.checks import (
    content_type_conformance,
    not_a_server_error,
    response_headers_conformance,
    response_schema_conformance,
    status_code_conformance,
)

CHECKS = [not_a_server_error, status_code_conformance, content_type_conformance, response_schema_conformance,
          response_headers_conformance]


@dataclass
class FuzzReport:
    sent: int = 0
    operations: set[str] = field(default_factory=set)
    statuses: dict[str, set[int]] = field(default_factory=dict)


def fuzz_service(base_url: str, examples_per_operation: int,
                 prepare: Callable[[schemathesis.Case], None] | None = None) -> FuzzReport:
    """Run generated requests against every operation of the served document; a failed check fails the test."""
    schema = schemathesis.openapi.from_url(base_url + "/openapi.json")
    report = FuzzReport()
    for result in schema.get_all_operations():
        operation = result.ok()
        strategy = st.one_of(
            operation.as_strategy(generation_mode=GenerationMode.POSITIVE),
            operation.as_strategy(generation_mode=GenerationMode.NEGATIVE),
        )

        @settings(max_examples=examples_per_operation, deadline=None, database=None,
                  suppress_health_check=list(HealthCheck))
        @given(case=strategy)
        def run(case: schemathesis.Case) -> None:
            if prepare is not None:
                prepare(case)
            response = case.call_and_validate(base_url=base_url, checks=CHECKS, timeout=30)
            label = f"{case.method.upper()} {case.path}"
            report.sent += 1
            report.operations.add(label)
            report.statuses.setdefault(label, set()).add(response.status_code)

        run()
    return report


def documented_operations(base_url: str) -> set[str]:
    """Every operation of the served document, as `METHOD /path`."""
    import httpx

    document = httpx.get(base_url + "/openapi.json", timeout=10, trust_env=False).json()
    return {f"{method.upper()} {path}" for path, item in document["paths"].items() for method in item
            if method in ("get", "put", "post", "delete", "patch")}
