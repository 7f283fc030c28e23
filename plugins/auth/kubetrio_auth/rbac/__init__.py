"""RBAC for kubetrio: the authorizer, upstream's default policy, ClusterRole aggregation
and escalation prevention, behind ``--authorization-mode`` (see :mod:`.plugin`)."""
