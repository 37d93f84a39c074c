"""Helpers of the serving tests: free loopback ports, and a model repository served by the real bundled tritonserver."""

import socket

from deploykit.serve.server import Ports


def free_ports() -> Ports:
    """Two ports free on 127.0.0.1 now (the kernel's choice, so parallel tests do not collide)."""
    sockets = [socket.socket(socket.AF_INET, socket.SOCK_STREAM) for _ in range(2)]
    try:
        for probe in sockets:
            probe.bind(("127.0.0.1", 0))
        return Ports(*(probe.getsockname()[1] for probe in sockets))
    finally:
        for probe in sockets:
            probe.close()
