"""
mgcpswitch: an MGCP (RFC 3435) call agent, a simulated media gateway and
their shared transaction layer, built on Twisted.
"""

__all__ = ["__version__"]

__version__ = "0.1.0"
