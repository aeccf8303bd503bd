"""API fuzzing from the console's own OpenAPI document (schemathesis, on hypothesis): every
operation with generated parameters, with a token and without, answered by a real gateway
process over HTTP. No input may cause a server error (5xx); responses must match the document
(status codes and body schemas), and without a token every data operation answers 401."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from typing import Any

import pytest
import schemathesis
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from schemathesis import GenerationMode
from schemathesis.checks import (
    not_a_server_error,
    response_schema_conformance,
    status_code_conformance,
)

from kit.console import ConsoleClient, console_gateway
from kit.gatewaykit import Dev, Mqtt
from signet_tools.fleet import adversary
from signet_tools.runners.mosquitto import Mosquitto

pytestmark = [pytest.mark.timeout(600), pytest.mark.slow]

SETTINGS = settings(
    max_examples=80,
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.filter_too_much],
    database=None,  # no .hypothesis folder in the tree
)


Console = tuple[ConsoleClient, list[str]]  # the client, the enrolled device ids


@pytest.fixture(scope="module")
def console(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Console]:
    tmp = tmp_path_factory.mktemp("fuzz")
    broker = Mosquitto(tmp / "broker").start()
    devs = [Dev(i) for i in range(2)]
    _cfg, gateway, client = console_gateway(tmp, broker.port, devs)
    mqtt = Mqtt(broker.port)
    try:  # something to find: records, a refusal
        for d in devs:
            mqtt.publish_all([(d.topic, r) for r in d.chain(5)])
        mqtt.publish(devs[0].topic, adversary.forged(devs[0].make("rev", advance=False)))
        mqtt.wait_acks({d.kid: 5 for d in devs})
        yield client, [d.kid for d in devs]
    finally:
        mqtt.close()
        client.close()
        gateway.kill()
        broker.stop()


def _cases(operation: Any, devices: list[str]) -> st.SearchStrategy[Any]:
    """Generated cases, valid (positive) and invalid (negative) by the document; half of them
    naming an enrolled device (by id or prefix), so that the operations behind a device look-up
    see generated values too, not only 404s."""
    modes = st.sampled_from([GenerationMode.POSITIVE, GenerationMode.NEGATIVE])
    known = st.one_of(st.none(), st.sampled_from(devices + [d[:8] for d in devices]))

    @st.composite
    def case(draw: st.DrawFn) -> Any:
        generated = draw(operation.as_strategy(draw(modes)))
        device = draw(known)
        if device is not None:
            if "{device}" in operation.path:
                generated.path_parameters = {**(generated.path_parameters or {}), "device": device}
            elif operation.path.endswith(("/report", "/peaq")):
                generated.query = {**(generated.query or {}), "device": device}
        return generated

    return case()


def _fuzz(console: ConsoleClient, devices: list[str], check: Callable[[Any], None]) -> list[str]:
    """Run check on generated cases of every operation of the served document (hypothesis
    drives each operation's strategy). Returns the operations fuzzed."""
    schema = schemathesis.openapi.from_url(f"{console.base}/openapi.json")
    fuzzed = []
    for result in schema.get_all_operations():
        operation = result.ok()

        def one_case(case: Any) -> None:
            check(case)

        SETTINGS(given(case=_cases(operation, devices))(one_case))()
        fuzzed.append(operation.label)
    return fuzzed


def test_no_server_error_with_a_token(console: Console) -> None:
    client, devices = console

    def check(case: Any) -> None:
        response = case.call(headers={"Authorization": f"Bearer {client.token}"}, timeout=30)
        case.validate_response(
            response,
            checks=[not_a_server_error, status_code_conformance, response_schema_conformance],
        )

    assert len(_fuzz(client, devices, check)) == 11  # with the dashboard's two


def test_no_token_no_data_whatever_the_input(console: Console) -> None:
    client, devices = console

    def check(case: Any) -> None:
        response = case.call(headers={"Authorization": "Bearer signet_guess"}, timeout=30)
        case.validate_response(response, checks=[not_a_server_error])
        if case.path.startswith("/api/") or case.path == "/metrics":
            assert response.status_code == 401, (case.path, response.status_code, response.text)

    _fuzz(client, devices, check)
