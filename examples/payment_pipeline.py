"""The reference's "Payment Processing Pipeline" example, on lamina's local services.

Run: ``python examples/payment_pipeline.py``
"""

from __future__ import annotations

import asyncio
import json
from typing import Any

from lamina import APIEndpoint, APIOrchestrationConfig, APIOrchestrator, OrchestrationMode
from lamina.testing import LocalServer, upstreams


async def process_payment(base: str, payment_data: dict[str, Any]) -> Any:
    validate_api = APIEndpoint(
        name="validate",
        url=f"{base}/payment/validate",
        method="POST",
        body=payment_data,
        timeout=5.0,
    )
    fraud_api = APIEndpoint(
        name="fraud_check",
        url=f"{base}/fraud/check",
        method="POST",
        transform_input=lambda data: {"amount": data["amount"], "card_hash": data["card_token"]},
        condition=lambda data: data["amount"] > 100,  # only for large amounts
    )
    payment_api = APIEndpoint(
        name="process",
        url=f"{base}/processor/charge",
        method="POST",
        retry_count=1,
        depends_on=["validate", "fraud_check"],
    )
    notify_api = APIEndpoint(
        name="notify", url=f"{base}/notify/payment", method="POST", depends_on=["process"]
    )
    config = APIOrchestrationConfig(
        endpoints=[validate_api, fraud_api, payment_api, notify_api],
        mode=OrchestrationMode.PIPELINE,
        fail_fast=True,
        circuit_breaker_threshold=3,
        total_timeout=30.0,
    )
    async with APIOrchestrator(config) as orchestrator:
        report = await orchestrator.run(payment_data)
    print("outcomes:", {n: r.outcome for n, r in report.endpoints.items()})
    return report.value


def main() -> None:
    with upstreams.install(LocalServer()) as server:
        for amount in (250, 20):
            data = {"amount": amount, "card_token": "tok_visa_4242"}
            result = asyncio.run(process_payment(server.url, data))
            print(f"amount={amount}:", json.dumps(result, sort_keys=True))
        print("order:", [r.path for r in server.requests()])


if __name__ == "__main__":
    main()
