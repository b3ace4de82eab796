"""Hypothesis strategies derived from the contract's own msgspec types.

Built from `msgspec.inspect`, so a field added to a Struct is generated (and
round-tripped) without touching the tests.
"""

from __future__ import annotations

import string
from datetime import timezone
from typing import Any

import msgspec
import msgspec.inspect as mi
from hypothesis import strategies as st

UUIDS = st.uuids().map(str)
JSON_SCALARS = st.none() | st.booleans() | st.integers(-(2**53), 2**53) | st.text(max_size=20)
JSON = st.recursive(JSON_SCALARS, lambda inner: st.lists(inner, max_size=3) | st.dictionaries(st.text(max_size=8), inner, max_size=3), max_leaves=8)
SAFE = string.ascii_letters + string.digits + "._:-"


def _str(info: mi.StrType) -> st.SearchStrategy[str]:
    lo, hi = info.min_length or 0, info.max_length
    if info.pattern:
        if "0-9a-f]{8}" in info.pattern:
            return UUIDS
        return st.text(alphabet=SAFE, min_size=max(lo, 1), max_size=min(hi or 40, 40))
    return st.text(min_size=lo, max_size=min(hi or 60, 60))


def for_type(info: mi.Type) -> st.SearchStrategy[Any]:
    match info:
        case mi.Metadata():
            return for_type(info.type)
        case mi.StructType():
            fields = {f.encode_name: for_type(f.type) for f in info.fields}
            required = {f.name: fields[f.encode_name] for f in info.fields if f.required}
            optional = {f.name: fields[f.encode_name] for f in info.fields if not f.required}
            return st.fixed_dictionaries(required, optional=optional).map(lambda kw: info.cls(**kw))
        case mi.UnionType():
            return st.one_of(*(for_type(t) for t in info.types))
        case mi.StrType():
            return _str(info)
        case mi.IntType():
            return st.integers(info.ge if info.ge is not None else -(2**31), info.le if info.le is not None else 2**31)
        case mi.FloatType():
            return st.floats(allow_nan=False, allow_infinity=False, width=64)
        case mi.BoolType():
            return st.booleans()
        case mi.NoneType():
            return st.none()
        case mi.DateTimeType():
            return st.datetimes(timezones=st.just(timezone.utc))
        case mi.EnumType():
            return st.sampled_from(list(info.cls))
        case mi.LiteralType():
            return st.sampled_from(info.values)
        case mi.DictType():  # keys and values of their declared types (Any: JSON)
            return st.dictionaries(for_type(info.key_type), for_type(info.value_type), max_size=4)
        case mi.ListType():
            return st.lists(for_type(info.item_type), max_size=4)
        case mi.AnyType():
            return JSON
    raise NotImplementedError(f"no strategy for {info!r}")


def instances(type_: Any) -> st.SearchStrategy[msgspec.Struct]:
    return for_type(mi.type_info(type_))
