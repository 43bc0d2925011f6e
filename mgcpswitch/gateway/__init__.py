"""
The simulated residential gateway: analog lines that speak the gateway side
of MGCP (RFC 3435, RFC 3660 packages L, D, G and B), with a driving API
(L{Line}) for tests, the demo and the load tool.  See
L{mgcpswitch.gateway.gateway} for the behaviour and the choices made.
"""

from .config import FaultConfig, GatewayConfig
from .connection import ConnectionState
from .gateway import SimulatedGateway
from .line import Line
from .service import GatewayService

__all__ = [
    "SimulatedGateway",
    "GatewayConfig",
    "FaultConfig",
    "Line",
    "ConnectionState",
    "GatewayService",
]
