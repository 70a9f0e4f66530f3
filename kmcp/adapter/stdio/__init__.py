"""The server processes: launchers (local children, the pod's FIFO bridge) and the two ends of their pipes."""
