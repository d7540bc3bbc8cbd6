"""Value encodings of sessions (01-core §8.8): values <-> block bytes.  Pure.

Bytes are always stored as they are, whatever the encoding.  ``binary``
decodes an empty block to None, as the reference does.
"""
from __future__ import annotations

import base64
import binascii
import json

from ..errors import BadArgumentError, DecodingError


def _as_bytes(v) -> bytes | None:
    if isinstance(v, (bytes, bytearray, memoryview)):
        return bytes(v)
    return None


class Binary:
    name = "binary"

    def encode(self, v) -> bytes:
        b = _as_bytes(v)
        if b is not None:
            return b
        if isinstance(v, str):
            return v.encode()
        raise BadArgumentError(f"binary encoding takes bytes or str, not {type(v).__name__}")

    def decode(self, b: bytes):
        return b if b else None


class Raw(Binary):
    """No encoding option: bytes in, bytes out (``b""`` for an empty block)."""

    name = "raw"

    def decode(self, b: bytes):
        return b


class Text:
    def __init__(self, name: str, codec: str) -> None:
        self.name = name
        self.codec = codec

    def encode(self, v) -> bytes:
        b = _as_bytes(v)
        if b is not None:
            return b
        if not isinstance(v, str):
            raise BadArgumentError(f"{self.name} encoding takes str, not {type(v).__name__}")
        try:
            return v.encode(self.codec)
        except UnicodeEncodeError as e:
            raise BadArgumentError(f"cannot encode as {self.name}: {e}") from None

    def decode(self, b: bytes):
        try:
            return b.decode(self.codec)
        except UnicodeDecodeError as e:
            raise DecodingError(f"block is not valid {self.name}: {e}") from None


class Hex:
    name = "hex"

    def encode(self, v) -> bytes:
        b = _as_bytes(v)
        if b is not None:
            return b
        try:
            return bytes.fromhex(v)
        except (TypeError, ValueError) as e:
            raise BadArgumentError(f"not hex: {e}") from None

    def decode(self, b: bytes):
        return b.hex()


class Base64:
    name = "base64"

    def encode(self, v) -> bytes:
        b = _as_bytes(v)
        if b is not None:
            return b
        try:
            return base64.b64decode(v)
        except (TypeError, ValueError, binascii.Error) as e:
            raise BadArgumentError(f"not base64: {e}") from None

    def decode(self, b: bytes):
        return base64.b64encode(b).decode()


class Json:
    def __init__(self, newline: bool = False) -> None:
        self.newline = newline
        self.name = "ndjson" if newline else "json"

    def encode(self, v) -> bytes:
        b = _as_bytes(v)
        if b is not None:
            return b
        try:
            s = json.dumps(v, separators=(",", ":"), ensure_ascii=False, allow_nan=False)
        except (TypeError, ValueError) as e:
            raise BadArgumentError(f"value cannot be encoded as JSON: {e}") from None
        return (s + "\n").encode() if self.newline else s.encode()

    def decode(self, b: bytes):
        try:
            return json.loads(b)
        except (ValueError, UnicodeDecodeError) as e:
            raise DecodingError(f"block is not valid JSON: {e}") from None


_ENCODINGS = {
    None: Raw(),
    "binary": Binary(),
    "utf-8": Text("utf-8", "utf-8"),
    "utf8": Text("utf-8", "utf-8"),
    "ascii": Text("ascii", "ascii"),
    "utf16le": Text("utf16le", "utf-16-le"),
    "ucs2": Text("utf16le", "utf-16-le"),
    "hex": Hex(),
    "base64": Base64(),
    "json": Json(),
    "ndjson": Json(newline=True),
}


def get_encoding(name_or_codec):
    """An encoding by name, or any object with ``encode``/``decode`` (a custom codec)."""
    if name_or_codec is None or isinstance(name_or_codec, str):
        enc = _ENCODINGS.get(name_or_codec)
        if enc is None:
            raise BadArgumentError(f"unknown value encoding {name_or_codec!r}")
        return enc
    if hasattr(name_or_codec, "encode") and hasattr(name_or_codec, "decode"):
        return name_or_codec
    raise BadArgumentError(f"not a value encoding: {name_or_codec!r}")
