"""One encoder, one typed decoder per message family.

Decoding is where validation happens: a payload that is not valid JSON, has
an unknown tag, a missing field, a non-UUID session id or a verb outside the
enum raises `ContractError`, and nothing below the boundary sees raw dicts.
"""

from __future__ import annotations

from typing import Any, TypeVar, overload

import msgspec

from .commands import AnyCommand, ApprovalGrant, ApprovalReply, CancelReply, SessionRecord, TurnLock, VerbRecord, VerbResult
from .kinds import KINDS, Event

T = TypeVar("T")


class ContractError(ValueError):
    """A payload does not match the contract. The message says where."""


_encoder = msgspec.json.Encoder()
_event_decoder = msgspec.json.Decoder(Event)
_command_decoder = msgspec.json.Decoder(AnyCommand)
#: By type (a union, VerbRecord, by its alias), with the name errors give.
_decoders: dict[Any, tuple[str, msgspec.json.Decoder]] = {
    type_: (name, msgspec.json.Decoder(type_))
    for name, type_ in (
        ("VerbResult", VerbResult),
        ("CancelReply", CancelReply),
        ("ApprovalReply", ApprovalReply),
        ("SessionRecord", SessionRecord),
        ("TurnLock", TurnLock),
        ("VerbRecord", VerbRecord),
        ("ApprovalGrant", ApprovalGrant),
    )
}


def encode(message: msgspec.Struct) -> bytes:
    return _encoder.encode(message)


def _decode(decoder: msgspec.json.Decoder, data: bytes | str, what: str) -> Any:
    try:
        return decoder.decode(data)
    except (msgspec.ValidationError, msgspec.DecodeError) as exc:
        raise ContractError(f"invalid {what}: {exc}") from None


def decode_event(data: bytes | str) -> Event:
    return _decode(_event_decoder, data, "event")


_kind_only = msgspec.json.Decoder(dict[str, Any])


def decode_event_lenient(data: bytes | str) -> Event | None:
    """Like `decode_event`, but None for a kind this version does not know
    (a newer writer's additive kind): readers skip it instead of failing.
    A known kind that does not validate still raises `ContractError`."""
    try:
        return decode_event(data)
    except ContractError:
        try:
            kind = _kind_only.decode(data).get("kind")
        except (msgspec.ValidationError, msgspec.DecodeError):
            raise ContractError("invalid event: not a JSON object") from None
        if isinstance(kind, str) and kind not in KINDS:
            return None
        raise


def decode_command(data: bytes | str) -> AnyCommand:
    return _decode(_command_decoder, data, "command")


@overload
def decode(data: bytes | str, type_: type[T]) -> T: ...
@overload
def decode(data: bytes | str, type_: Any) -> Any: ...  # a union: VerbRecord


def decode(data: bytes | str, type_: Any) -> Any:
    """Decode a reply or a KV record (`type_`: its type, or VerbRecord's union)."""
    found = _decoders.get(type_)
    if found is None:
        raise TypeError(f"{type_!r} is not a contract type")
    name, decoder = found
    return _decode(decoder, data, name)
