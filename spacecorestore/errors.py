"""Typed errors of spacecorestore: one base class, one subclass per reference code.

Every error carries ``.code``, the reference's error code string (ours for
``NOT_A_STORE`` and ``STORAGE_CORRUPT``).  Storage damage errors also carry the
file path and the offset (or node/block index) where the damage was found.
corefs maps these codes to errno in one place.
"""
from __future__ import annotations


class SpacecoreError(Exception):
    """Base class of every error raised by spacecorestore."""

    code = "SPACECORE_ERROR"

    def __init__(self, message: str = "") -> None:
        super().__init__(f"{self.code}: {message}" if message else self.code)
        self.message = message


class SessionNotWritableError(SpacecoreError):
    """Append/truncate/clear on a session without a secret key or opened writable=False."""

    code = "SESSION_NOT_WRITABLE"


class SessionClosedError(SpacecoreError):
    """Any call on a closed session or store."""

    code = "SESSION_CLOSED"


class StorageConflictError(SpacecoreError):
    """The storage holds another core than the key asked for."""

    code = "STORAGE_CONFLICT"


class StorageEmptyError(SpacecoreError):
    """No core in storage and create_if_missing=False."""

    code = "STORAGE_EMPTY"


class BadArgumentError(SpacecoreError, ValueError):
    """An argument of the wrong type, size or range (block too large, bad key, ...)."""

    code = "BAD_ARGUMENT"


class BlockNotAvailableError(SpacecoreError):
    """A block is not held locally and cannot be fetched."""

    code = "BLOCK_NOT_AVAILABLE"


class RequestTimeoutError(SpacecoreError):
    """A waiting get/seek/update ran past its timeout."""

    code = "REQUEST_TIMEOUT"


class RequestCancelledError(SpacecoreError):
    """A waiting call was cancelled because its session closed."""

    code = "REQUEST_CANCELLED"


class InvalidSignatureError(SpacecoreError):
    """A signature does not verify against the core's key or manifest."""

    code = "INVALID_SIGNATURE"


class InvalidProofError(SpacecoreError):
    """A Merkle proof does not verify."""

    code = "INVALID_PROOF"


class InvalidChecksumError(SpacecoreError):
    """A checksum does not match."""

    code = "INVALID_CHECKSUM"


class DecodingError(SpacecoreError, ValueError):
    """Bytes that cannot be decoded (compact encoding, value encoding)."""

    code = "DECODING_ERROR"


class InvalidOperationError(SpacecoreError):
    """An operation that is not allowed in the current state."""

    code = "INVALID_OPERATION"


class SnapshotNotAvailableError(SpacecoreError):
    """A block beyond a snapshot's length, or truncated away while waited for."""

    code = "SNAPSHOT_NOT_AVAILABLE"


class StorageDamageError(SpacecoreError):
    """Storage is damaged; the files are left as found.  ``path`` and ``offset`` say where."""

    code = "STORAGE_DAMAGE"

    def __init__(self, message: str, *, path: str | None = None, offset: int | None = None) -> None:
        where = ""
        if path is not None:
            where = f" [{path}" + (f" @ {offset}" if offset is not None else "") + "]"
        super().__init__(message + where)
        self.path = path
        self.offset = offset


class OplogCorruptError(StorageDamageError):
    """The oplog is damaged beyond a torn tail."""

    code = "OPLOG_CORRUPT"


class StorageCorruptError(StorageDamageError):
    """The tree, bitfield or data file is damaged (missing nodes, short data, bad hash)."""

    code = "STORAGE_CORRUPT"


class LockedError(SpacecoreError):
    """The store (or a standalone core's oplog) is locked by another process or object."""

    code = "ELOCKED"


class NotAStoreError(SpacecoreError):
    """A non-empty directory without a ``primary-key`` file."""

    code = "NOT_A_STORE"


# Transport (02-transport) --------------------------------------------------------

class TransportError(SpacecoreError):
    """Base of the secret-stream and protomux errors; the connection is destroyed."""

    code = "TRANSPORT_ERROR"


class HandshakeError(TransportError):
    """The Noise handshake failed (bad message, refused DH key, timeout mid-handshake)."""

    code = "HANDSHAKE_FAILED"


class BadHeaderError(TransportError):
    """The secretstream header frame is wrong (length, stream id)."""

    code = "BAD_HEADER"


class BadMessageError(TransportError):
    """A frame failed decryption or had the wrong shape."""

    code = "BAD_MESSAGE"


class StreamTimeoutError(TransportError):
    """No data (not even a keep-alive) within the receive timeout, or a stalled handshake."""

    code = "ETIMEDOUT"


class ProtocolError(TransportError):
    """A protocol rule was broken; ``LocalProtocolError`` by us, ``RemoteProtocolError`` by the peer."""

    code = "PROTOCOL_ERROR"


class LocalProtocolError(ProtocolError):
    """We were asked to do something the protocol forbids (e.g. send on a closed channel)."""


class RemoteProtocolError(ProtocolError):
    """The peer sent something the protocol forbids (fatal for the connection)."""


class HandshakeTimeoutError(StreamTimeoutError, HandshakeError):
    """The handshake (Noise messages and the peer's stream header) did not finish in time.

    Both a ``StreamTimeoutError`` and a ``HandshakeError``: a stalled handshake is each.
    """
