"""Schemathesis against a running service's `/openapi.json`: valid and invalid cases, no 5xx allowed."""

from __future__ import annotations

from collections.abc import Callable

import schemathesis
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from schemathesis import GenerationMode


def fuzz_service(base_url: str, examples_per_operation: int,
                 prepare: Callable[[schemathesis.Case], None] | None = None) -> int:
    """Run generated requests against every operation; returns how many cases were sent."""
    schema = schemathesis.openapi.from_url(base_url + "/openapi.json")
    operations = [result.ok() for result in schema.get_all_operations()]
    sent = 0
    for operation in operations:
        strategy = st.one_of(
            operation.as_strategy(generation_mode=GenerationMode.POSITIVE),
            operation.as_strategy(generation_mode=GenerationMode.NEGATIVE),
        )

        @settings(max_examples=examples_per_operation, deadline=None, database=None,
                  suppress_health_check=list(HealthCheck))
        @given(case=strategy)
        def run(case: schemathesis.Case) -> None:
            nonlocal sent
            if prepare is not None:
                prepare(case)
            response = case.call(base_url=base_url, timeout=30)
            sent += 1
            assert response.status_code < 500, (
                f"{case.method} {case.formatted_path} -> {response.status_code}: {response.text[:500]}"
            )

        run()
    return sent
