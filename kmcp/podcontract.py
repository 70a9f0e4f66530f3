"""What a rendered stdio pod and the adapter inside it agree on, in one place (imports nothing).

The renderer writes these names into the pod; the adapter reads its environment by them; the local pod runner
(no kubelet) finds the containers by them. Changing one here changes all three together.
"""

ADAPTER_CONTAINER = "kmcp-adapter"  # the native sidecar (an init container with restartPolicy: Always)
SERVER_CONTAINER = "mcp-server"  # the user's stdio server, started through the FIFO bridge
BRIDGE_PATH = "/kmcp"  # the in-memory emptyDir both containers mount: serve.sh and the FIFOs
BRIDGE_SCRIPT = f"{BRIDGE_PATH}/serve.sh"
# Replicas: the adapter's pod IP and the key its session ids and input_required states are sealed with.
POD_IP_ENV = "KMCP_POD_IP"
SESSION_KEY_ENV = "KMCP_SESSION_KEY"
