"""twistd plugins: C{twistd -n mgcpswitch} and C{twistd -n mgcpgateway}."""

from twisted.application.service import ServiceMaker

mgcpswitch = ServiceMaker(
    "mgcpswitch",
    "mgcpswitch.tap",
    "MGCP call agent with web admin (and, with --demo, simulated gateways placing calls)",
    "mgcpswitch",
)
mgcpgateway = ServiceMaker(
    "mgcpgateway",
    "mgcpswitch.gwtap",
    "Simulated MGCP residential gateway (analog lines) for tests, demos and load",
    "mgcpgateway",
)
