"""``health``: ``grpc.health.v1.Health/Check`` for "" and the service's own name on
each address, every call bounded by a timeout."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import grpc
from grpc_health.v1 import health_pb2, health_pb2_grpc

from infrastructure.grpc.server import COMMAND_SERVICE_NAME, QUERY_SERVICE_NAME

TARGETS = {"command": COMMAND_SERVICE_NAME, "query": QUERY_SERVICE_NAME}


def _check(address: str, services: list[str], timeout: float) -> list[dict[str, Any]]:
    results = []
    with grpc.insecure_channel(address) as channel:
        stub = health_pb2_grpc.HealthStub(channel)
        for service in services:
            entry: dict[str, Any] = {"address": address, "service": service}
            try:
                reply = stub.Check(health_pb2.HealthCheckRequest(service=service), timeout=timeout)
                entry["status"] = health_pb2.HealthCheckResponse.ServingStatus.Name(reply.status)
            except grpc.RpcError as exc:
                code = exc.code()
                entry["status"] = "ERROR"
                entry["error"] = f"{code.name if code else 'UNKNOWN'}: {exc.details()}"
            results.append(entry)
    return results


def health(addresses: Mapping[str, Sequence[str]], timeout: float) -> dict[str, Any]:
    """``addresses``: target ("command" or "query") -> its host:port addresses (every query worker)."""
    checks = []
    for target, each in addresses.items():
        for address in each:
            for entry in _check(address, ["", TARGETS[target]], timeout):
                checks.append({"target": target, **entry})
    return {"ok": all(c["status"] == "SERVING" for c in checks), "timeout_seconds": timeout, "checks": checks}
