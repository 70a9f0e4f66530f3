"""`kmcp controller`: reconciles MCPServers into Deployments, Services and ServiceAccounts.

Layers, imported one way: ``settings`` and ``conditions`` (pure) -> ``queue``, ``informer``, ``leader``, ``metrics``,
``httpserver``/``probes`` (machinery) -> ``reconcile`` (the engine) -> ``manager`` (wiring) -> ``cli``.
"""
