"""Whether a Ray head answers at an address, found out in bounded time before Ray is handed it.

``ray.init`` retries an address without a deadline it can be given: where
nothing listens, where a web server or a silent socket listens, and where
the other Ray server listens (the Ray Client port given as ``host:port``, the
head's GCS port given as ``ray://``), it waits for tens of seconds or more and
prints a line of its own every second. ``check_reachable`` asks first, within
``CONNECT_TIMEOUT_S`` for the connection and as much again for the answer,
the question Ray itself asks first: the head's cluster id for ``host:port``,
a ping for ``ray://``. Ray (grpc, the generated stubs) is imported only here,
only when a cluster is asked for.
"""

from __future__ import annotations

import os
from urllib.parse import urlsplit

from mnistlab.data.connect import ConnectTimeout, connect_within
from mnistlab.errors import ClusterError

__all__ = ["check_reachable", "CONNECT_TIMEOUT_S"]

CONNECT_TIMEOUT_S = 5.0  # a head that does not accept a TCP connection in this long is taken as down
_FIX = "check --cluster / RAY_ADDRESS"


def check_reachable(address: str) -> None:
    """Refuse, in bounded time, an address (``host:port`` or ``ray://host:port``) where no Ray head answers."""
    host, port = _host_and_port(address)
    try:  # looking the name up too within the time: a DNS server that never answers held this for minutes
        with connect_within((host, port), CONNECT_TIMEOUT_S):
            pass
    except ConnectTimeout as exc:
        raise ClusterError(
            f"No Ray cluster answers at {host}:{port}: {exc}; {_FIX} (an IP address needs "
            "no DNS lookup) and that the head runs (`ray start --head`)."
        ) from None
    except OSError as exc:
        reason = exc.strerror or type(exc).__name__
        raise ClusterError(
            f"No Ray cluster answers at {host}:{port} ({reason}); start one (`ray start --head`) or {_FIX}."
        ) from None
    if os.environ.get("RAY_USE_TLS", "0").lower() in ("1", "true"):
        return  # a TLS head's handshake needs Ray's certificates: left to ray.init
    _check_speaks_ray(host, port, client=address.startswith("ray://"))


def _host_and_port(address: str) -> tuple[str, int]:
    """The host and port an address names; one sentence for one that names none, or a port out of range."""
    parts = urlsplit(address if "://" in address else f"ray://{address}")
    try:
        host, port = parts.hostname, parts.port
    except ValueError:  # urllib: a port that is no number, or is out of range
        port_text = parts.netloc.rpartition(":")[2]
        if port_text.isdigit():
            raise ClusterError(
                f"The Ray address {address!r} names port {port_text}, outside 1-65535; give host:port of the head "
                "(e.g. 10.0.0.5:6379)."
            ) from None
        host, port = None, None
    if not host or not port:
        raise ClusterError(
            f"The Ray address {address!r} names no host and port; give host:port of the head "
            "(e.g. 10.0.0.5:6379), ray://host:10001, auto or local."
        )
    return host, port


def _check_speaks_ray(host: str, port: int, *, client: bool) -> None:
    """Refuse a server that is not the Ray server the address asks for: the head's GCS (``host:port``) or its
    Ray Client server (``ray://``), each asked what Ray asks it first."""
    import grpc  # Ray's own dependency

    channel = grpc.insecure_channel(f"{host}:{port}")
    try:
        grpc.channel_ready_future(channel).result(timeout=CONNECT_TIMEOUT_S)
        if _answers(channel, client=client):
            return
        other = _answers(channel, client=not client)
    except grpc.FutureTimeoutError:  # no gRPC: a web server, a silent socket
        raise ClusterError(
            f"Something listens at {host}:{port}, but not a Ray head (no gRPC answer in {CONNECT_TIMEOUT_S:g} s); "
            f"{_FIX}: a head's address is host:6379 (ray://host:10001 for Ray Client)."
        ) from None
    finally:
        channel.close()
    if other and client:
        raise ClusterError(
            f"ray://{host}:{port} is a Ray head's own port, not its Ray Client server; give {host}:{port} "
            "without ray://, or ray://HOST:10001 (the head's --ray-client-server-port)."
        )
    if other:
        raise ClusterError(
            f"{host}:{port} is a Ray Client server, not a Ray head's own port; give ray://{host}:{port}, "
            "or HOST:6379 (the head's --port)."
        )
    raise ClusterError(
        f"A gRPC server answers at {host}:{port}, but not a Ray head; {_FIX}: a head's address is host:6379 "
        "(ray://host:10001 for Ray Client)."
    )


def _answers(channel, *, client: bool) -> bool:
    """Whether the server behind ``channel`` has the method Ray calls first on a Ray Client server (``client``)
    or a head's GCS: any answer but "no such method" (refused, unauthenticated...) says it does."""
    import grpc
    from ray.core.generated import gcs_service_pb2, gcs_service_pb2_grpc, ray_client_pb2, ray_client_pb2_grpc

    # The generated protobuf modules declare their messages at run time: no types for mypy to see.
    try:
        if client:
            ping = ray_client_pb2.ClusterInfoRequest(type=ray_client_pb2.ClusterInfoType.PING)  # type: ignore[attr-defined]
            ray_client_pb2_grpc.RayletDriverStub(channel).ClusterInfo(ping, timeout=CONNECT_TIMEOUT_S)
        else:
            cluster_id = gcs_service_pb2.GetClusterIdRequest()  # type: ignore[attr-defined]
            gcs_service_pb2_grpc.NodeInfoGcsServiceStub(channel).GetClusterId(cluster_id, timeout=CONNECT_TIMEOUT_S)
    except grpc.RpcError as exc:
        if exc.code() == grpc.StatusCode.DEADLINE_EXCEEDED:
            raise grpc.FutureTimeoutError() from None  # taken as no answer at all
        return exc.code() != grpc.StatusCode.UNIMPLEMENTED
    return True
