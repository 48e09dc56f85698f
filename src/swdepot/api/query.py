"""ONTAP's collection conventions as pure functions over plain dicts.

ONTAP clients (Ansible, the Python client library, scripts) lean on the generic query
parameters of every GET: ``fields`` projection, ``<field>=<query>`` filters, ``order_by``,
``max_records``/``offset`` paging with a HAL ``next`` link, ``return_records`` and
``return_timeout``. Endpoints describe their resource with a :class:`ResourceSchema`, call
:func:`parse_query` once to validate the request (so errors surface before any work) and
then :func:`page` (collections) or :func:`select` (instances) to shape the answer. No web
framework is imported here: the HTTP layer passes decoded ``(name, value)`` pairs in and
serialises the returned dicts.
"""

from __future__ import annotations

import json
import operator
import re
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from functools import lru_cache, partial
from types import MappingProxyType
from typing import Any, TypeVar
from urllib.parse import urlencode

from swdepot.errors import (
    FIELDS_MISMATCHED_BRACES,
    ORDER_BY_UNSUPPORTED,
    UNEXPECTED_ARGUMENT,
    InvalidInput,
    invalid_field_value,
)

DEFAULT_MAX_RECORDS = 10000
DEFAULT_RETURN_TIMEOUT = 15
MAX_RETURN_TIMEOUT = 120

_ORDER_NAMES = ("order_by", "$orderBy")
_PAGING = ("fields", "max_records", "offset", "return_records", "return_timeout", "pretty")
RESERVED = frozenset((*_PAGING, *_ORDER_NAMES, "ignore_unknown_fields"))
_NO_EXTRA: Mapping[str, Callable[[str], object]] = MappingProxyType({})
_COMPARE: Mapping[str, Callable[[Any, Any], bool]] = MappingProxyType(
    {"<": operator.lt, "<=": operator.le, ">": operator.gt, ">=": operator.ge}
)
_NUMBER = re.compile(r"[+-]?(?:[0-9]+(?:\.[0-9]*)?|\.[0-9]+)(?:[eE][+-]?[0-9]+)?")
_INTEGER = re.compile(r"[+-]?[0-9]+")
_T = TypeVar("_T")


@dataclass(frozen=True)
class ResourceSchema:
    """What a resource exposes to queries.

    ``fields`` lists every dotted path that exists (objects and their leaves), because
    ONTAP validates ``fields``, filter and ``order_by`` names against the model, not
    against whatever a record happens to contain.
    """

    fields: frozenset[str]
    key_fields: tuple[str, ...]
    expensive_fields: frozenset[str] = frozenset()
    numeric_fields: frozenset[str] = frozenset()  # filter operands must be numbers


@dataclass(frozen=True)
class Condition:
    """One ``|``-separated alternative of a filter value.

    ``op`` is one of ``eq``, ``wild``, ``null``, ``<``, ``<=``, ``>``, ``>=``, ``range``;
    operands stay text because their type depends on the value they meet in a record.
    """

    op: str
    operands: tuple[str, ...] = ()
    negate: bool = False


@dataclass(frozen=True)
class Filter:
    """A ``<field>=<query>`` parameter; ``value`` is kept verbatim for error messages."""

    field: str
    value: str
    alternatives: tuple[Condition, ...]


@dataclass(frozen=True)
class Query:
    """A validated GET query; ``fields`` holds brace-expanded tokens such as ``!a.b``."""

    fields: tuple[str, ...] | None = None
    filters: tuple[Filter, ...] = ()
    order_by: tuple[tuple[str, bool], ...] = ()
    max_records: int | None = None
    offset: int = 0
    return_records: bool = True
    return_timeout: int = DEFAULT_RETURN_TIMEOUT
    pretty: bool = False
    extra: Mapping[str, object] = field(default_factory=lambda: MappingProxyType({}))


# --- scalar parameters ------------------------------------------------------------------


def parse_bool(name: str, value: str) -> bool:
    """ONTAP booleans, any case: Ansible sends Python's ``True``/``False``."""
    lowered = value.lower()
    if lowered not in ("true", "false"):
        raise invalid_field_value(name, value, "<true|false>")
    return lowered == "true"


def parse_int(name: str, value: str, lo: int, hi: int | None) -> int:
    """An integer in ``lo..hi`` (``hi=None``: unbounded, shown as ``<lo..>``)."""
    number = int(value) if _INTEGER.fullmatch(value) else lo - 1
    if number < lo or (hi is not None and number > hi):
        raise invalid_field_value(name, value, f"<{lo}..{'' if hi is None else hi}>")
    return number


_timeout = partial(parse_int, lo=0, hi=MAX_RETURN_TIMEOUT)


# --- parse_query ------------------------------------------------------------------------

_DEFAULT_QUERY = Query()


def parse_query(
    params: Sequence[tuple[str, str]],
    schema: ResourceSchema,
    *,
    collection: bool,
    extra: Mapping[str, Callable[[str], object]] = _NO_EXTRA,
) -> Query:
    """Validate every query parameter up front; the last occurrence of a name wins.

    ``extra`` names belong to the endpoint: each parser is applied to its value and the
    result lands in ``Query.extra``. Filters only exist on collections; on an instance a
    field name is as unexpected as any other unknown name (262179).
    """
    if not params:
        return _DEFAULT_QUERY  # every poll of an instance: nothing to validate
    last = dict(params)
    filters: list[Filter] = []
    for name, value in last.items():
        if name in RESERVED or name in extra:
            continue
        if not collection or name not in schema.fields:
            raise InvalidInput(UNEXPECTED_ARGUMENT, f'Unexpected argument "{name}".', target=name)
        flt = _parse_filter(name, value)
        if name in schema.numeric_fields:
            _check_numeric(flt)
        filters.append(flt)
    ignore_unknown = _optional(last, "ignore_unknown_fields", parse_bool, False)
    order_value = next((value for name, value in reversed(params) if name in _ORDER_NAMES), "")
    return Query(
        fields=_parse_fields(last.get("fields", ""), schema, ignore_unknown=ignore_unknown),
        filters=tuple(filters),
        order_by=_parse_order_by(order_value, schema),
        max_records=_optional(last, "max_records", partial(parse_int, lo=1, hi=None), None),
        offset=_optional(last, "offset", partial(parse_int, lo=0, hi=None), 0),
        return_records=_optional(last, "return_records", parse_bool, True),
        return_timeout=_optional(last, "return_timeout", _timeout, DEFAULT_RETURN_TIMEOUT),
        pretty=_optional(last, "pretty", parse_bool, False),
        extra=MappingProxyType(
            {name: parse(last[name]) for name, parse in extra.items() if name in last}
        ),
    )


def _optional(
    last: Mapping[str, str], name: str, parse: Callable[[str, str], _T], default: _T
) -> _T:
    """Parse ``name`` when present; reserved names are optional with ONTAP's defaults."""
    return parse(name, last[name]) if name in last else default


def _parse_fields(
    value: str, schema: ResourceSchema, *, ignore_unknown: bool
) -> tuple[str, ...] | None:
    """Expand braces, validate names; ``None`` when nothing remains (``fields=``)."""
    tokens: list[str] = []
    for token in expand_fields(value):
        name = token.removeprefix("!")
        if token in ("*", "**") or name in schema.fields:
            tokens.append(token)
        elif token and not ignore_unknown:
            raise invalid_field_value("fields", name, "<field,...>")
    return tuple(tokens) or None


def expand_fields(value: str) -> list[str]:
    """``a,b.{c,d}`` -> ``a``, ``b.c``, ``b.d``: a ``fields`` value's names, braces expanded."""
    return [token for item in _split_fields(value) for token in _expand_braces(item)]


def _split_fields(text: str) -> list[str]:
    """Split on top-level commas: ``a,b.{c,d}`` -> ``a``, ``b.{c,d}``."""
    parts: list[str] = []
    depth = start = 0
    for index, char in enumerate(text):
        if char in "{}":
            depth += 1 if char == "{" else -1
            if depth < 0:
                break
        elif char == "," and depth == 0:
            parts.append(text[start:index])
            start = index + 1
    if depth != 0:
        raise InvalidInput(
            FIELDS_MISMATCHED_BRACES,
            f'Mismatched braces in the value "{text}" for field "fields".',
            target="fields",
        )
    parts.append(text[start:])
    return parts


def _expand_braces(item: str) -> list[str]:
    """``!b.{c,d.{e,f}}`` -> ``!b.c``, ``!b.d.e``, ``!b.d.f`` (balanced input assumed)."""
    opening = item.find("{")
    if opening < 0:
        return [item.strip()]
    depth = 0
    for closing in range(opening, len(item)):
        depth += {"{": 1, "}": -1}.get(item[closing], 0)
        if depth == 0:
            break
    head, body, tail = item[:opening], item[opening + 1 : closing], item[closing + 1 :]
    return [token for part in _split_fields(body) for token in _expand_braces(head + part + tail)]


def _parse_order_by(value: str, schema: ResourceSchema) -> tuple[tuple[str, bool], ...]:
    """``a desc,b`` -> ``(("a", True), ("b", False))``; empty items are ignored."""
    keys: list[tuple[str, bool]] = []
    for item in value.split(","):
        words = item.split()
        if not words:
            continue
        if words[0] not in schema.fields:
            raise InvalidInput(
                ORDER_BY_UNSUPPORTED,
                f'Field "{words[0]}" is not supported as an order_by field.',
                target="order_by",
            )
        direction = words[1].lower() if len(words) == 2 else "asc"
        if len(words) > 2 or direction not in ("asc", "desc"):
            raise invalid_field_value("order_by", item.strip(), "<field [asc|desc],...>")
        keys.append((words[0], direction == "desc"))
    return tuple(keys)


# --- filters ----------------------------------------------------------------------------


def _parse_filter(name: str, value: str) -> Filter:
    return Filter(name, value, tuple(_parse_condition(alt) for alt in _split_alternatives(value)))


def _split_alternatives(value: str) -> list[str]:
    """Split on ``|`` outside ``"..."`` and ``{...}`` escapes."""
    parts: list[str] = []
    start = depth = 0
    quoted = False
    for index, char in enumerate(value):
        if char == '"' and depth == 0:
            quoted = not quoted
        elif char in "{}" and not quoted:
            depth = depth + 1 if char == "{" else max(depth - 1, 0)
        elif char == "|" and not quoted and depth == 0:
            parts.append(value[start:index])
            start = index + 1
    parts.append(value[start:])
    return parts


def _parse_condition(text: str) -> Condition:
    """One alternative: ``!`` prefix, then escape, ``null``, comparison, range, wildcard."""
    negate = text.startswith("!")
    body = text[1:] if negate else text
    if len(body) >= 2 and (body[0], body[-1]) in (('"', '"'), ("{", "}")):
        return Condition("eq", (body[1:-1],), negate)
    if body.lower() == "null":
        return Condition("null", (), negate)
    for op in ("<=", ">=", "<", ">"):
        if body.startswith(op):
            return Condition(op, (body[len(op) :],), negate)
    low, dots, high = body.partition("..")
    if dots and low and high:
        return Condition("range", (low, high), negate)
    return Condition("wild" if "*" in body else "eq", (body,), negate)


def matches(record: dict[str, Any], filters: Sequence[Filter]) -> bool:
    """All filters hold (AND); within one filter any alternative may hold (OR)."""
    return all(_filter_holds(record, flt) for flt in filters)


def _filter_holds(record: dict[str, Any], flt: Filter) -> bool:
    leaves = _leaves(record, flt.field.split("."))
    return any(_condition_holds(leaves, cond, flt) for cond in flt.alternatives)


def _condition_holds(leaves: list[Any], cond: Condition, flt: Filter) -> bool:
    """Negation inverts the whole test, so ``!x`` also matches an unset field."""
    if cond.op == "null":
        return (not leaves) != cond.negate
    return any(_leaf_holds(leaf, cond, flt) for leaf in leaves) != cond.negate


def _leaf_holds(leaf: Any, cond: Condition, flt: Filter) -> bool:
    if isinstance(leaf, dict | list):
        return False
    if cond.op == "wild":
        pattern = "".join(".*" if char == "*" else re.escape(char) for char in cond.operands[0])
        return re.fullmatch(pattern, _text(leaf), re.IGNORECASE | re.DOTALL) is not None
    if _is_number(leaf):
        value: Any = leaf
        operands: list[Any] = [_number(operand, flt) for operand in cond.operands]
    else:
        value, operands = _text(leaf), list(cond.operands)
        if cond.op == "eq":
            return bool(value.casefold() == operands[0].casefold())
    if cond.op == "eq":
        return bool(value == operands[0])
    if cond.op == "range":
        return bool(operands[0] <= value <= operands[1])
    return _COMPARE[cond.op](value, operands[0])


def _leaves(obj: Any, parts: Sequence[str]) -> list[Any]:
    """Values at a dotted path, flattening lists on the way; unset and None give none."""
    if isinstance(obj, list):
        return [leaf for item in obj for leaf in _leaves(item, parts)]
    if not parts:
        return [] if obj is None else [obj]
    if not isinstance(obj, dict) or parts[0] not in obj:
        return []
    return _leaves(obj[parts[0]], parts[1:])


def _is_number(value: Any) -> bool:
    return isinstance(value, int | float) and not isinstance(value, bool)


def _check_numeric(flt: Filter) -> None:
    """A number field's filter must compare with numbers, whatever records exist.

    Otherwise ``?size=abc`` would fail only once a record is there to compare with.
    """
    for cond in flt.alternatives:
        if cond.op not in ("wild", "null"):
            for operand in cond.operands:
                _number(operand, flt)


def _number(text: str, flt: Filter) -> int | float:
    if _NUMBER.fullmatch(text) is None:
        raise invalid_field_value(flt.field, flt.value, "<number>")
    return int(text) if _INTEGER.fullmatch(text) else float(text)


def _text(value: Any) -> str:
    """JSON spelling of a scalar, so ``true`` matches a boolean field."""
    return ("true" if value else "false") if isinstance(value, bool) else str(value)


# --- projection -------------------------------------------------------------------------


@dataclass(frozen=True)
class _Plan:
    """What :func:`select` keeps: everything (``whole``) or ``include`` paths, minus the rest."""

    whole: bool
    include: frozenset[str]
    exclude: frozenset[str]
    drop: frozenset[str]


@lru_cache(maxsize=256)
def _plan(fields: tuple[str, ...] | None, schema: ResourceSchema, *, collection: bool) -> _Plan:
    """Keys are always kept; only-exclusions (``fields=!x``) start from ``*``.

    Cached: clients poll with the same few ``fields`` values, and the plan depends on
    nothing else.
    """
    tokens = fields or ()
    keys = frozenset(schema.key_fields)
    named = frozenset(t for t in tokens if t not in ("*", "**") and not t.startswith("!"))
    exclude = frozenset(t[1:] for t in tokens if t.startswith("!")) - keys
    everything = "**" in tokens
    whole = everything or "*" in tokens or (not named and (bool(exclude) or not collection))
    drop = frozenset(
        path
        for path in schema.expensive_fields
        if not everything and not any(n == path or n.startswith(path + ".") for n in named)
    )
    return _Plan(whole, named | keys, exclude, drop)


def select(
    record: dict[str, Any], query: Query, schema: ResourceSchema, *, collection: bool
) -> dict[str, Any]:
    """Project one record per ``fields``; the record's own key order is preserved.

    The record itself comes back when nothing is left out (an instance GET without
    ``fields``, the most polled request there is): callers pass records they built for
    this answer, so there is nothing to copy.
    """
    plan = _plan(query.fields, schema, collection=collection)
    if plan.whole and not plan.exclude and not plan.drop:
        return record
    return _walk(record, "", plan, inherited=plan.whole)


def _walk(
    obj: dict[str, Any], prefix: str, plan: _Plan, *, inherited: bool = False
) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for key, value in obj.items():
        path = f"{prefix}.{key}" if prefix else key
        if key != "_links" and (path in plan.exclude or path in plan.drop):
            continue
        if key == "_links" or inherited or path in plan.include:
            out[key] = _copy(value, path, plan, inherited=True)
        elif any(p.startswith(path + ".") for p in plan.include):
            partial_value = _copy(value, path, plan, inherited=False)
            if partial_value != {}:
                out[key] = partial_value
    return out


def _copy(value: Any, path: str, plan: _Plan, *, inherited: bool) -> Any:
    if isinstance(value, dict):
        return _walk(value, path, plan, inherited=inherited)
    if isinstance(value, list):
        return [_copy(item, path, plan, inherited=inherited) for item in value]
    return value


# --- paging -----------------------------------------------------------------------------


def page(
    records: list[dict[str, Any]],
    query: Query,
    schema: ResourceSchema,
    *,
    self_href: str,
    raw_query: Sequence[tuple[str, str]],
) -> dict[str, Any]:
    """Filter, order (stable), slice and project; build the collection envelope.

    ``next`` repeats the request with ``offset`` moved on, so clients that just follow
    ``_links.next.href`` see every record exactly once.
    """
    hits = [record for record in records if matches(record, query.filters)]
    for path, descending in reversed(query.order_by):
        hits.sort(key=partial(_sort_key, path=path), reverse=descending)
    links: dict[str, Any] = {"self": {"href": _href(self_href, raw_query)}}
    if not query.return_records:
        return {"num_records": len(hits), "_links": links}
    end = query.offset + (query.max_records or DEFAULT_MAX_RECORDS)
    chunk = hits[query.offset : end]
    if end < len(hits):
        rest = [(name, value) for name, value in raw_query if name != "offset"]
        links["next"] = {"href": _href(self_href, [*rest, ("offset", str(end))])}
    return {
        "records": [select(record, query, schema, collection=True) for record in chunk],
        "num_records": len(chunk),
        "_links": links,
    }


def _sort_key(record: dict[str, Any], path: str) -> tuple[Any, ...]:
    """Unset first, then numbers, then strings (code-point order), then anything else."""
    leaves = _leaves(record, path.split("."))
    if not leaves:
        return (0,)
    value = leaves[0]
    if isinstance(value, bool | int | float):
        return (1, value)
    if isinstance(value, str):
        return (2, value)
    return (3, json.dumps(value, sort_keys=True, default=str))


def _href(base: str, pairs: Sequence[tuple[str, str]]) -> str:
    return f"{base}?{urlencode(list(pairs))}" if pairs else base


def strip_links(obj: Any) -> Any:
    """Drop HAL ``_links`` everywhere (``Accept: application/json``) but a top-level ``next``."""
    cleaned = _strip(obj)
    links = obj.get("_links") if isinstance(obj, dict) else None
    if isinstance(links, dict) and "next" in links:
        cleaned["_links"] = {"next": _strip(links["next"])}
    return cleaned


def _strip(obj: Any) -> Any:
    if isinstance(obj, dict):
        return {key: _strip(value) for key, value in obj.items() if key != "_links"}
    if isinstance(obj, list):
        return [_strip(item) for item in obj]
    return obj
