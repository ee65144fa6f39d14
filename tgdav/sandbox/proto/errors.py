"""Whose fault a protocol failure is. Both end the one connection they happened on, nothing else."""

from __future__ import annotations


class ProtocolError(Exception):
    """The client broke MTProto (framing, handshake, encryption): close its connection.

    `transport_code`, when set, is sent first as a transport error (a bare negative int32), e.g. -404
    for an auth key the server does not know."""

    def __init__(self, message: str, transport_code: int | None = None) -> None:
        super().__init__(message)
        self.transport_code = transport_code
