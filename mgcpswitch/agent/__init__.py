"""
The call agent: registry of gateways and endpoints, per-line state
machines, calls, routing, CDRs, and L{CallControlService} tying them
together.
"""
