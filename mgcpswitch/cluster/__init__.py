"""
Call agents sharing their state through PostgreSQL (issue 14): the store,
leadership with a lease and an epoch, transaction-id blocks, and the
service that ties them together.  docs/FAILOVER.md explains the design.

Everything here needs psycopg 3 (the C{postgresql} extra); nothing else
in mgcpswitch imports this package unless the configuration names a
PostgreSQL store.
"""
