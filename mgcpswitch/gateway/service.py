# -*- test-case-name: tests.test_gateway_options -*-
"""A L{twisted.application.service.Service} running one L{SimulatedGateway}."""

from __future__ import annotations

from typing import Any

from twisted.application.service import Service

from .gateway import SimulatedGateway

__all__ = ["GatewayService"]


class GatewayService(Service):
    """Starts the gateway (listen, then the restart procedure) and stops it cleanly."""

    name = "mgcpgateway"

    def __init__(self, gateway: SimulatedGateway) -> None:
        self.gateway = gateway

    def startService(self) -> None:  # noqa: N802
        super().startService()  # type: ignore[no-untyped-call]  # Service is unannotated upstream
        self.gateway.start()

    def stopService(self) -> Any:  # noqa: N802
        super().stopService()  # type: ignore[no-untyped-call]  # Service is unannotated upstream
        return self.gateway.stop()
