"""Payload codecs: user values <-> bytes. msgpack by default, JSON available. Never pickle.

A codec turns a value into plain data (dataclasses become maps, pydantic models are dumped,
enums become their value, datetimes become ISO strings), serialises it, and applies an optional
:class:`PayloadTransform` (encryption, compression). Decoding reverses the steps and uses a type
hint (an orchestration's or activity's annotations) to rebuild dataclasses and models.
"""

from __future__ import annotations

import dataclasses
import enum
import json
import types
import typing
from abc import ABC, abstractmethod
from collections.abc import Mapping
from datetime import date, datetime, timedelta
from typing import Any, ClassVar, Protocol, runtime_checkable

import msgpack  # type: ignore[import-untyped]

from durable_redis.errors import CodecError, ConfigurationError, PayloadTooLargeError

__all__ = [
    "DEFAULT_MAX_PAYLOAD_BYTES",
    "Codec",
    "JsonCodec",
    "MsgpackCodec",
    "PayloadTransform",
    "from_plain",
    "to_plain",
]

#: Largest encoded payload (input, output, activity result, event data, custom status) a codec
#: produces by default. Redis accepts far more (512 MB a value), but a few huge values fill its
#: memory and make every replay of the instance slow; raise it per codec if you need to.
DEFAULT_MAX_PAYLOAD_BYTES = 1 << 20


@runtime_checkable
class PayloadTransform(Protocol):
    """A reversible bytes -> bytes step applied after serialising (e.g. encryption)."""

    def encode(self, data: bytes) -> bytes: ...

    def decode(self, data: bytes) -> bytes: ...


class Codec(ABC):
    """Encodes user values to bytes and back. Subclasses choose the wire format.

    ``max_payload_bytes`` bounds every encoded payload (after the transform); a larger one raises
    :class:`~durable_redis.errors.PayloadTooLargeError` before anything is written. ``None``
    lifts the limit.
    """

    format_name: ClassVar[str] = ""

    def __init__(
        self,
        *,
        transform: PayloadTransform | None = None,
        max_payload_bytes: int | None = DEFAULT_MAX_PAYLOAD_BYTES,
    ) -> None:
        if max_payload_bytes is not None and (
            isinstance(max_payload_bytes, bool)
            or not isinstance(max_payload_bytes, int)
            or max_payload_bytes < 1
        ):
            raise ConfigurationError(
                f"max_payload_bytes must be an int >= 1 or None, got {max_payload_bytes!r}"
            )
        self.transform = transform
        self.max_payload_bytes = max_payload_bytes

    @abstractmethod
    def _dumps(self, plain: object) -> bytes: ...

    @abstractmethod
    def _loads(self, data: bytes) -> object: ...

    def encode(self, value: object) -> bytes:
        """Encode ``value``; raises CodecError for values the format cannot carry."""
        try:
            raw = self._dumps(to_plain(value))
        except CodecError:
            raise
        except (TypeError, ValueError, OverflowError) as exc:
            raise CodecError(f"cannot encode {type(value).__name__}: {exc}") from exc
        data = self.transform.encode(raw) if self.transform is not None else raw
        if self.max_payload_bytes is not None and len(data) > self.max_payload_bytes:
            raise PayloadTooLargeError(
                f"encoded {type(value).__name__} is {len(data)} bytes; the limit is "
                f"{self.max_payload_bytes} (the codec's max_payload_bytes)"
            )
        return data

    def decode(self, data: bytes, type_hint: object = Any) -> Any:
        """Decode ``data``, rebuilding ``type_hint`` (dataclass, model, containers) if given."""
        try:
            raw = self.transform.decode(data) if self.transform is not None else data
            plain = self._loads(raw)
        except CodecError:
            raise
        except Exception as exc:  # every decoder error becomes CodecError
            raise CodecError(f"cannot decode payload ({self.format_name}): {exc}") from exc
        return from_plain(plain, type_hint)

    def __repr__(self) -> str:
        return (
            f"{type(self).__name__}(transform={self.transform!r}, "
            f"max_payload_bytes={self.max_payload_bytes!r})"
        )


class MsgpackCodec(Codec):
    """msgpack (the default)."""

    format_name = "msgpack"

    def _dumps(self, plain: object) -> bytes:
        data: bytes = msgpack.packb(plain, use_bin_type=True)
        return data

    def _loads(self, data: bytes) -> object:
        return msgpack.unpackb(data, raw=False, strict_map_key=False)


class JsonCodec(Codec):
    """UTF-8 JSON (bytes values are not supported)."""

    format_name = "json"

    def _dumps(self, plain: object) -> bytes:
        return json.dumps(plain, separators=(",", ":"), allow_nan=False).encode()

    def _loads(self, data: bytes) -> object:
        return json.loads(data.decode("utf-8"))


# -- plain data ---------------------------------------------------------------------------------
_SCALARS = (str, int, float, bool, bytes, type(None))


def to_plain(value: object) -> object:
    """Turn ``value`` into maps, lists and scalars."""
    if isinstance(value, _SCALARS):
        return value
    if isinstance(value, enum.Enum):
        return to_plain(value.value)
    if dataclasses.is_dataclass(value) and not isinstance(value, type):
        return {f.name: to_plain(getattr(value, f.name)) for f in dataclasses.fields(value)}
    dump = getattr(value, "model_dump", None)
    if dump is not None and callable(dump):  # pydantic v2 model
        return dump(mode="json")
    if isinstance(value, Mapping):
        return {to_plain(k): to_plain(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [to_plain(v) for v in value]
    if isinstance(value, set | frozenset):
        return [to_plain(v) for v in sorted(value, key=repr)]
    if isinstance(value, datetime | date):
        return value.isoformat()
    if isinstance(value, timedelta):
        return value.total_seconds()
    raise CodecError(f"cannot encode a value of type {type(value).__name__}")


def from_plain(plain: object, hint: object) -> Any:
    """Rebuild a value of type ``hint`` from plain data (best effort; Any returns it as is)."""
    if hint is Any or hint is object or hint is None or isinstance(hint, typing.TypeVar):
        return plain
    if plain is None:
        return None
    origin = typing.get_origin(hint)
    args = typing.get_args(hint)
    try:
        if origin is typing.Union or origin is types.UnionType:
            return _from_union(plain, args)
        if origin is typing.Literal or origin is typing.Annotated:
            return from_plain(plain, args[0]) if origin is typing.Annotated else plain
        if origin in (list, set, frozenset) or (
            origin is not None and origin.__name__ in ("Sequence", "Iterable", "Collection")
        ):
            item = args[0] if args else Any
            items = [from_plain(v, item) for v in _as_list(plain)]
            return origin(items) if origin in (set, frozenset) else items
        if origin is tuple:
            values = _as_list(plain)
            if len(args) == 2 and args[1] is Ellipsis:
                return tuple(from_plain(v, args[0]) for v in values)
            if args:
                return tuple(from_plain(v, a) for v, a in zip(values, args, strict=True))
            return tuple(values)
        if origin is dict or (origin is not None and origin.__name__ == "Mapping"):
            key_t, val_t = args if args else (Any, Any)
            if not isinstance(plain, dict):
                raise TypeError(f"expected a map, got {type(plain).__name__}")
            return {from_plain(k, key_t): from_plain(v, val_t) for k, v in plain.items()}
        if isinstance(hint, type):
            return _from_class(plain, hint)
    except CodecError:
        raise
    except (TypeError, ValueError, KeyError) as exc:
        raise CodecError(f"cannot decode {hint!r} from {type(plain).__name__}: {exc}") from exc
    return plain


def _as_list(plain: object) -> list[object]:
    if not isinstance(plain, list | tuple):
        raise TypeError(f"expected a list, got {type(plain).__name__}")
    return list(plain)


def _from_union(plain: object, args: tuple[object, ...]) -> Any:
    errors: list[str] = []
    for arg in args:
        if arg is type(None):
            continue
        try:
            return from_plain(plain, arg)
        except CodecError as exc:
            errors.append(str(exc))
    raise CodecError("no member of the union matched: " + "; ".join(errors))


def _from_class(plain: object, cls: type) -> Any:
    if dataclasses.is_dataclass(cls):
        if not isinstance(plain, dict):
            raise TypeError(f"expected a map for {cls.__name__}, got {type(plain).__name__}")
        hints = typing.get_type_hints(cls)
        kwargs = {
            f.name: from_plain(plain[f.name], hints.get(f.name, Any))
            for f in dataclasses.fields(cls)
            if f.init and f.name in plain
        }
        return cls(**kwargs)
    validate = getattr(cls, "model_validate", None)
    if validate is not None and callable(validate):  # pydantic v2 model
        try:
            return validate(plain)
        except Exception as exc:  # pydantic.ValidationError without importing pydantic
            raise CodecError(f"cannot decode {cls.__name__}: {exc}") from exc
    if issubclass(cls, enum.Enum):
        return cls(plain)
    if cls is datetime and isinstance(plain, str):
        return datetime.fromisoformat(plain)
    if cls is date and isinstance(plain, str):
        return date.fromisoformat(plain)
    if cls is timedelta and isinstance(plain, int | float):
        return timedelta(seconds=plain)
    if cls is float and isinstance(plain, int) and not isinstance(plain, bool):
        return float(plain)
    if cls in (int, float, str, bytes, bool) and not isinstance(plain, cls):
        raise TypeError(f"expected {cls.__name__}, got {type(plain).__name__}")
    if cls is tuple and isinstance(plain, list):
        return tuple(plain)
    return plain
