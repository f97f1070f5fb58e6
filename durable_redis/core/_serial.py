"""Schema-versioned msgpack encoding of core's frozen dataclasses (events, messages, tasks)."""

from __future__ import annotations

import dataclasses
from collections.abc import Iterable
from typing import Any, Generic, TypeVar

import msgpack  # type: ignore[import-untyped]

from durable_redis.errors import CodecError, FailureDetails

__all__ = ["SCHEMA_VERSION", "Schema", "decode_failure", "encode_failure"]

SCHEMA_VERSION = 1
"""Version written into every encoded record; decoders refuse newer versions."""

T = TypeVar("T")


def _failure_to_plain(f: FailureDetails) -> list[str]:
    return [f.kind, f.type_name, f.message, f.traceback]


def _failure_from_plain(v: object) -> FailureDetails:
    if not isinstance(v, list) or len(v) != 4 or not all(isinstance(x, str) for x in v):
        raise CodecError(f"malformed failure details: {v!r}")
    return FailureDetails(kind=v[0], type_name=v[1], message=v[2], traceback=v[3])


def encode_failure(details: FailureDetails) -> bytes:
    """Encode a FailureDetails (as stored in an instance's ``error``)."""
    data: bytes = msgpack.packb(
        {"v": SCHEMA_VERSION, "f": _failure_to_plain(details)}, use_bin_type=True
    )
    return data


def decode_failure(data: bytes) -> FailureDetails:
    """Decode bytes made by :func:`encode_failure`; CodecError on bad bytes."""
    record = _unpack(data)
    return _failure_from_plain(record.get("f"))


def _unpack(data: bytes) -> dict[str, Any]:
    try:
        record = msgpack.unpackb(data, raw=False, strict_map_key=False)
    except Exception as exc:
        detail = str(exc) or {"FormatError": "not msgpack"}.get(type(exc).__name__, "no detail")
        start = data[:16].hex() + ("..." if len(data) > 16 else "")
        raise CodecError(
            f"undecodable record ({type(exc).__name__}: {detail}; {len(data)} bytes: {start})"
        ) from exc
    if not isinstance(record, dict):
        raise CodecError(f"record is not a map: {type(record).__name__}")
    version = record.get("v")
    if not isinstance(version, int) or version < 1 or version > SCHEMA_VERSION:
        raise CodecError(f"unsupported schema version {version!r} (this code reads <= 1)")
    return record


class Schema(Generic[T]):
    """Encodes a closed family of dataclasses as ``{"v": version, "k": kind, field: value}``."""

    def __init__(self, family: str, classes: Iterable[type[T]]) -> None:
        self.family = family
        self._by_kind: dict[str, type[T]] = {}
        self._fields: dict[type[T], tuple[tuple[str, bool, bool], ...]] = {}
        # fields left at a None default are not written (decode restores the default): it
        # keeps stored histories small
        self._none_default: dict[type[T], frozenset[str]] = {}
        for cls in classes:
            fields = []
            for f in dataclasses.fields(cls):  # type: ignore[arg-type]
                is_failure = "FailureDetails" in str(f.type)
                is_tuple = str(f.type).startswith("tuple")
                fields.append((f.name, is_failure, is_tuple))
            self._by_kind[cls.__name__] = cls
            self._fields[cls] = tuple(fields)
            self._none_default[cls] = frozenset(
                f.name
                for f in dataclasses.fields(cls)  # type: ignore[arg-type]
                if f.default is None
            )

    def encode(self, obj: T) -> bytes:
        fields = self._fields.get(type(obj))
        if fields is None:
            raise CodecError(f"not a {self.family}: {type(obj).__name__}")
        record: dict[str, object] = {"v": SCHEMA_VERSION, "k": type(obj).__name__}
        omit = self._none_default[type(obj)]
        for name, is_failure, is_tuple in fields:
            value = getattr(obj, name)
            if value is None and name in omit:
                continue
            if is_failure and value is not None:
                value = _failure_to_plain(value)
            elif is_tuple:
                value = list(value)
            record[name] = value
        try:
            data: bytes = msgpack.packb(record, use_bin_type=True)
        except (TypeError, ValueError, OverflowError) as exc:
            raise CodecError(f"cannot encode {type(obj).__name__}: {exc}") from exc
        return data

    def decode(self, data: bytes) -> T:
        record = _unpack(data)
        kind = record.get("k")
        cls = self._by_kind.get(kind) if isinstance(kind, str) else None
        if cls is None:
            raise CodecError(f"unknown {self.family} kind {kind!r}")
        kwargs: dict[str, object] = {}
        for name, is_failure, is_tuple in self._fields[cls]:
            if name not in record:
                continue  # a field added later with a default
            value = record[name]
            if is_failure and value is not None:
                value = _failure_from_plain(value)
            elif is_tuple and isinstance(value, list):
                value = tuple(value)
            kwargs[name] = value
        try:
            return cls(**kwargs)
        except TypeError as exc:
            raise CodecError(f"malformed {self.family} {kind}: {exc}") from exc
