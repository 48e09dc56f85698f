"""ONTAP collection conventions: fields, filters, order_by, paging, HAL links."""

from __future__ import annotations

import copy
from typing import Any
from urllib.parse import parse_qsl, urlsplit

import pytest

from swdepot.api.http import http_status
from swdepot.api.query import (
    Query,
    ResourceSchema,
    matches,
    page,
    parse_bool,
    parse_int,
    parse_query,
    select,
    strip_links,
)
from swdepot.errors import InvalidInput

HREF = "/api/cluster/jobs"

SCHEMA = ResourceSchema(
    fields=frozenset(
        {
            "uuid",
            "description",
            "state",
            "code",
            "cancelable",
            "start_time",
            "end_time",
            "error",
            "error.code",
            "error.message",
            "tags",
            "nodes",
            "nodes.name",
            "nodes.uuid",
            "stats",
            "stats.bytes",
            "stats.detail",
            "_links",
        }
    ),
    key_fields=("uuid",),
    expensive_fields=frozenset({"stats"}),
)


def job(number: int, **fields: Any) -> dict[str, Any]:
    record: dict[str, Any] = {"uuid": f"u{number}"}
    record.update(fields)
    record["_links"] = {"self": {"href": f"{HREF}/u{number}"}}
    return record


RECORDS: list[dict[str, Any]] = [
    job(
        1,
        description="Software download",
        state="running",
        code=0,
        cancelable=True,
        start_time="2026-11-27T10:00:00+00:00",
        tags=["blue", "green"],
        nodes=[
            {"name": "node1", "uuid": "n1", "_links": {"self": {"href": "/api/cluster/nodes/n1"}}},
            {"name": "node2", "uuid": "n2"},
        ],
        stats={"bytes": 10, "detail": "x"},
    ),
    job(
        2,
        description="Software Download",
        state="failure",
        code=10551381,
        cancelable=False,
        start_time="2026-11-27T11:00:00+00:00",
        end_time="2026-11-27T11:05:00+00:00",
        error={"code": "10551381", "message": "Download failed."},
        tags=["red"],
        stats={"bytes": 5, "detail": "y"},
    ),
    job(
        3,
        description="a|b*",
        state="success",
        code=0,
        cancelable=False,
        start_time="2026-11-27T09:00:00+00:00",
        end_time="2026-11-27T09:30:00+00:00",
        tags=[],
    ),
    job(
        4,
        description="Package delete",
        state="queued",
        code=3,
        start_time="2026-11-28T00:00:00+00:00",
        error=None,
    ),
    job(5, description="{x}", state="success", code=1.5, start_time="2026-11-27T10:30:00+00:00"),
]


def q(text: str = "", *, collection: bool = True, **kwargs: Any) -> Query:
    return parse_query(
        parse_qsl(text, keep_blank_values=True), SCHEMA, collection=collection, **kwargs
    )


def uuids_for(text: str) -> list[str]:
    query = q(text)
    return [r["uuid"] for r in RECORDS if matches(r, query.filters)]


def run(text: str, records: list[dict[str, Any]] = RECORDS) -> dict[str, Any]:
    pairs = parse_qsl(text, keep_blank_values=True)
    return page(records, q(text), SCHEMA, self_href=HREF, raw_query=pairs)


def error_of(text: str, *, collection: bool = True) -> InvalidInput:
    with pytest.raises(InvalidInput) as caught:
        run(text) if collection else q(text, collection=False)
    return caught.value


# --- projection -------------------------------------------------------------------------


def test_no_fields_collection_returns_keys_and_links() -> None:
    assert select(RECORDS[1], q(), SCHEMA, collection=True) == {
        "uuid": "u2",
        "_links": {"self": {"href": f"{HREF}/u2"}},
    }


def test_no_fields_instance_returns_all_but_expensive() -> None:
    expected = {k: v for k, v in RECORDS[1].items() if k != "stats"}
    assert select(RECORDS[1], q(collection=False), SCHEMA, collection=False) == expected


def test_star_and_double_star() -> None:
    star = select(RECORDS[0], q("fields=*"), SCHEMA, collection=True)
    assert "stats" not in star
    assert star["nodes"] == RECORDS[0]["nodes"]
    assert select(RECORDS[0], q("fields=**"), SCHEMA, collection=True) == RECORDS[0]


def test_named_fields_keep_record_order_keys_and_links() -> None:
    out = select(RECORDS[1], q("fields=error.code,state"), SCHEMA, collection=True)
    assert out == {
        "uuid": "u2",
        "state": "failure",
        "error": {"code": "10551381"},
        "_links": {"self": {"href": f"{HREF}/u2"}},
    }
    assert list(out) == ["uuid", "state", "error", "_links"]


def test_object_field_returns_whole_sub_object() -> None:
    out = select(RECORDS[1], q("fields=error"), SCHEMA, collection=True)
    assert out["error"] == {"code": "10551381", "message": "Download failed."}


def test_named_fields_on_instance_restrict_output() -> None:
    out = select(RECORDS[1], q("fields=state", collection=False), SCHEMA, collection=False)
    assert out == {"uuid": "u2", "state": "failure", "_links": {"self": {"href": f"{HREF}/u2"}}}


def test_partial_list_of_objects_keeps_nested_links() -> None:
    out = select(RECORDS[0], q("fields=nodes.name"), SCHEMA, collection=True)
    assert out["nodes"] == [
        {"name": "node1", "_links": {"self": {"href": "/api/cluster/nodes/n1"}}},
        {"name": "node2"},
    ]


def test_exclusions_and_keys_cannot_be_excluded() -> None:
    out = select(RECORDS[1], q("fields=*,!error,!uuid,!description"), SCHEMA, collection=True)
    assert set(out) == {
        "uuid",
        "state",
        "code",
        "cancelable",
        "start_time",
        "end_time",
        "tags",
        "_links",
    }


def test_only_exclusions_start_from_star() -> None:
    out = select(RECORDS[1], q("fields=!error.message"), SCHEMA, collection=True)
    assert out["error"] == {"code": "10551381"}
    assert out["state"] == "failure"
    assert "stats" not in out


def test_named_expensive_leaf_is_returned() -> None:
    out = select(RECORDS[0], q("fields=stats.bytes"), SCHEMA, collection=True)
    assert out["stats"] == {"bytes": 10}
    assert select(RECORDS[0], q("fields=*,stats"), SCHEMA, collection=True)["stats"] == {
        "bytes": 10,
        "detail": "x",
    }


def test_brace_groups_expand() -> None:
    assert q("fields=error.{code,message},state").fields == ("error.code", "error.message", "state")
    assert q("fields=*,!{state,code}").fields == ("*", "!state", "!code")
    out = select(RECORDS[1], q("fields=*,!{state,code,error.{message}}"), SCHEMA, collection=True)
    assert "state" not in out and "code" not in out
    assert out["error"] == {"code": "10551381"}


def test_empty_fields_is_absent() -> None:
    assert q("fields=").fields is None
    assert q("fields=,").fields is None


def test_unknown_field_name() -> None:
    err = error_of("fields=state,space.snapshot.autodelete")
    assert err.code == 262197
    assert err.target == "fields"
    assert err.message == (
        'The value "space.snapshot.autodelete" is invalid for field "fields" (<field,...>)'
    )
    assert error_of("fields=!bogus").message.startswith('The value "bogus" ')


def test_ignore_unknown_fields_drops_unknown_names() -> None:
    assert q("fields=bogus,state&ignore_unknown_fields=true").fields == ("state",)


def test_mismatched_braces() -> None:
    assert error_of("fields=error.{code").code == 262286
    assert error_of("fields=error}.code").code == 262286


# --- filters ----------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("query", "expected"),
    [
        ("state=RUNNING", ["u1"]),
        ("state=running|failure", ["u1", "u2"]),
        ("state=!success", ["u1", "u2", "u4"]),
        ("state=!success|running", ["u1", "u2", "u4"]),
        ("state=!running&state=!failure", ["u1", "u3", "u4", "u5"]),  # last one wins
        ("description=software*", ["u1", "u2"]),
        ("description=*DELETE", ["u4"]),
        ("description=s*d", ["u1", "u2"]),
        ("description=!*download*", ["u3", "u4", "u5"]),
        ('description="a|b*"', ["u3"]),
        ('description=a|"a|b*"', ["u3"]),
        ('description=!"a|b*"', ["u1", "u2", "u4", "u5"]),
        ("description={a|b*}", ["u3"]),
        ("description={{x}}", ["u5"]),
        ("code=0", ["u1", "u3"]),
        ("code=0.0", ["u1", "u3"]),
        ("code=!0", ["u2", "u4", "u5"]),
        ("code=>1", ["u2", "u4", "u5"]),
        ("code=>=3", ["u2", "u4"]),
        ("code=<3", ["u1", "u3", "u5"]),
        ("code=<=1.5", ["u1", "u3", "u5"]),
        ("code=1..3", ["u4", "u5"]),
        ("code=1..3|>10000000", ["u2", "u4", "u5"]),
        ("code=!1..3", ["u1", "u2", "u3"]),
        ("code=1*", ["u2", "u5"]),
        ("start_time=>2026-11-27T10:00:00%2B00:00", ["u2", "u4", "u5"]),
        ("start_time=2026-11-27T09:00:00%2B00:00..2026-11-27T10:30:00%2B00:00", ["u1", "u3", "u5"]),
        ("start_time=2026-11-27*", ["u1", "u2", "u3", "u5"]),
        ("end_time=<2026-11-28", ["u2", "u3"]),
        ("end_time=<2026-11-27T10:00:00%2B00:00|null", ["u1", "u3", "u4", "u5"]),
        ("error=null", ["u1", "u3", "u4", "u5"]),
        ("error=!null", ["u2"]),
        ("error.code=10551381", ["u2"]),
        ("error.message=*FAILED.", ["u2"]),
        ("tags=green", ["u1"]),
        ("tags=!green", ["u2", "u3", "u4", "u5"]),
        ("tags=null", ["u3", "u4", "u5"]),
        ("nodes.name=node2", ["u1"]),
        ("cancelable=TRUE", ["u1"]),
        ("cancelable=false", ["u2", "u3"]),
        ("state=failure&code=0", []),
        ("state=success&code=0", ["u3"]),
        ("state=", []),
    ],
)
def test_filter_operators(query: str, expected: list[str]) -> None:
    assert uuids_for(query) == expected


def test_filter_parse_keeps_last_duplicate() -> None:
    query = q("state=running&state=failure")
    assert len(query.filters) == 1
    assert query.filters[0].value == "failure"


def test_numeric_filter_with_text_operand() -> None:
    err = error_of("code=abc|0")
    assert err.code == 262197
    assert err.target == "code"
    assert err.message == 'The value "abc|0" is invalid for field "code" (<number>)'
    assert error_of("code=<x").code == 262197


def test_matches_without_filters() -> None:
    assert matches({}, ()) is True


def test_filter_on_instance_is_unexpected() -> None:
    err = error_of("state=running", collection=False)
    assert err.code == 262179
    assert err.message == 'Unexpected argument "state".'
    assert err.target == "state"


def test_unknown_argument() -> None:
    err = error_of("max_records=1&bogus=1")
    assert (err.code, err.message, err.target) == (262179, 'Unexpected argument "bogus".', "bogus")
    assert http_status(err) == 400


def test_extra_names_are_left_to_the_endpoint() -> None:
    query = q("version=9.16.1", collection=False, extra={"version": str.upper})
    assert query.extra == {"version": "9.16.1"}
    assert q("action=X", extra={"action": str.lower}).extra["action"] == "x"
    assert q().extra == {}


def test_reserved_names_accepted_everywhere() -> None:
    query = q("pretty=false&ignore_unknown_fields=false&offset=0&max_records=3", collection=False)
    assert (query.pretty, query.offset, query.max_records) == (False, 0, 3)


# --- order_by ---------------------------------------------------------------------------


def order(text: str) -> list[str]:
    return [r["uuid"] for r in run(text)["records"]]


def test_order_by_default_keeps_given_order() -> None:
    assert order("") == ["u1", "u2", "u3", "u4", "u5"]


def test_order_by_asc_desc_and_multi() -> None:
    assert order("order_by=code") == ["u1", "u3", "u5", "u4", "u2"]
    assert order("order_by=code asc") == ["u1", "u3", "u5", "u4", "u2"]
    assert order("order_by=code DESC") == ["u2", "u4", "u5", "u1", "u3"]
    assert order("order_by=state,code desc") == ["u2", "u4", "u1", "u5", "u3"]
    assert order("order_by=state desc,start_time") == ["u3", "u5", "u1", "u4", "u2"]
    assert order("$orderBy=start_time desc") == ["u4", "u2", "u5", "u1", "u3"]


def test_order_by_unset_sorts_first_and_nested_paths() -> None:
    assert order("order_by=end_time") == ["u1", "u4", "u5", "u3", "u2"]
    assert order("order_by=error.code desc") == ["u2", "u1", "u3", "u4", "u5"]


def test_order_by_last_of_both_spellings_wins() -> None:
    assert q("order_by=code&$orderBy=state desc").order_by == (("state", True),)


def test_order_by_unknown_field() -> None:
    err = error_of("order_by=code,bogus desc")
    assert err.code == 262268
    assert err.message == 'Field "bogus" is not supported as an order_by field.'
    assert err.target == "order_by"


def test_order_by_bad_direction() -> None:
    err = error_of("order_by=code sideways")
    assert err.code == 262197
    assert err.target == "order_by"
    assert error_of("order_by=code asc desc").code == 262197


# --- paging -----------------------------------------------------------------------------


def test_envelope_and_self_link() -> None:
    body = run("state=success&fields=state")
    assert body == {
        "records": [
            {"uuid": "u3", "state": "success", "_links": {"self": {"href": f"{HREF}/u3"}}},
            {"uuid": "u5", "state": "success", "_links": {"self": {"href": f"{HREF}/u5"}}},
        ],
        "num_records": 2,
        "_links": {"self": {"href": f"{HREF}?state=success&fields=state"}},
    }
    assert run("")["_links"] == {"self": {"href": HREF}}


def test_max_records_and_next_link() -> None:
    body = run("order_by=code desc&max_records=2")
    assert [r["uuid"] for r in body["records"]] == ["u2", "u4"]
    assert body["num_records"] == 2
    assert body["_links"]["next"] == {"href": f"{HREF}?order_by=code+desc&max_records=2&offset=2"}


def test_next_link_replaces_offset() -> None:
    body = run("offset=1&max_records=2&fields=*")
    assert [r["uuid"] for r in body["records"]] == ["u2", "u3"]
    assert body["_links"]["next"]["href"] == f"{HREF}?max_records=2&fields=%2A&offset=3"


def test_no_next_link_on_last_page() -> None:
    assert "next" not in run("max_records=5")["_links"]
    assert "next" not in run("offset=3&max_records=2")["_links"]
    body = run("offset=9")
    assert (body["records"], body["num_records"]) == ([], 0)


@pytest.mark.parametrize("size", [1, 2, 3, 4, 7])
def test_following_next_links_sees_every_record_once(size: int) -> None:
    records = [job(n, code=n % 4, state="running") for n in range(1, 24)]
    href: str | None = f"{HREF}?code=!0&order_by=code desc&max_records={size}"
    seen: list[str] = []
    pages = 0
    while href is not None:
        parts = urlsplit(href)
        assert parts.path == HREF
        pairs = parse_qsl(parts.query, keep_blank_values=True)
        query = parse_query(pairs, SCHEMA, collection=True)
        body = page(records, query, SCHEMA, self_href=HREF, raw_query=pairs)
        assert body["num_records"] == len(body["records"]) <= size
        seen += [r["uuid"] for r in body["records"]]
        href = body["_links"].get("next", {}).get("href")
        pages += 1
    expected = [r["uuid"] for r in records if r["code"] == 3]
    expected += [r["uuid"] for r in records if r["code"] == 2]
    expected += [r["uuid"] for r in records if r["code"] == 1]
    assert seen == expected
    assert len(set(seen)) == len(seen) == 18
    assert pages == -(-18 // size)


def test_default_page_size_is_10000() -> None:
    records = [{"uuid": str(n)} for n in range(10001)]
    body = page(records, q(), SCHEMA, self_href=HREF, raw_query=[])
    assert body["num_records"] == 10000
    assert body["_links"]["next"] == {"href": f"{HREF}?offset=10000"}


def test_return_records_false_counts_all_matches() -> None:
    assert run("return_records=false&max_records=1&code=0") == {
        "num_records": 2,
        "_links": {"self": {"href": f"{HREF}?return_records=false&max_records=1&code=0"}},
    }
    assert q("return_records=False").return_records is False
    assert q().return_records is True


@pytest.mark.parametrize("value", ["0", "-1", "x", "1.5", ""])
def test_max_records_must_be_positive_integer(value: str) -> None:
    err = error_of(f"max_records={value}")
    assert err.code == 262197
    assert err.message == f'The value "{value}" is invalid for field "max_records" (<1..>)'


def test_offset_must_not_be_negative() -> None:
    assert error_of("offset=-1").message == ('The value "-1" is invalid for field "offset" (<0..>)')
    assert q("offset=0&offset=4").offset == 4


# --- return_timeout, booleans, integers -------------------------------------------------


def test_return_timeout_default_and_bounds() -> None:
    assert q().return_timeout == 15
    assert q("return_timeout=0").return_timeout == 0
    assert q("return_timeout=120").return_timeout == 120
    assert q("return_timeout=600&return_timeout=30").return_timeout == 30


@pytest.mark.parametrize("value", ["600", "121", "-1", "ten"])
def test_return_timeout_out_of_range(value: str) -> None:
    err = error_of(f"return_timeout={value}")
    assert err.code == 262197
    assert err.target == "return_timeout"
    assert err.message == f'The value "{value}" is invalid for field "return_timeout" (<0..120>)'
    assert err.to_body()["error"]["code"] == "262197"


@pytest.mark.parametrize(("text", "value"), [("True", True), ("FALSE", False), ("true", True)])
def test_parse_bool_accepts_any_case(text: str, value: bool) -> None:
    assert parse_bool("pretty", text) is value


@pytest.mark.parametrize("text", ["yes", "1", "", "truee"])
def test_parse_bool_rejects_other_words(text: str) -> None:
    with pytest.raises(InvalidInput) as caught:
        parse_bool("return_records", text)
    assert caught.value.message == (
        f'The value "{text}" is invalid for field "return_records" (<true|false>)'
    )


def test_parse_int_bounds() -> None:
    assert parse_int("n", "7", 0, 10) == 7
    assert parse_int("n", "+7", 0, None) == 7
    with pytest.raises(InvalidInput) as caught:
        parse_int("n", "11", 0, 10)
    assert caught.value.message == 'The value "11" is invalid for field "n" (<0..10>)'


# --- strip_links ------------------------------------------------------------------------


def test_strip_links_keeps_only_top_level_next() -> None:
    body = run("max_records=1&fields=nodes")
    original = copy.deepcopy(body)
    assert strip_links(body) == {
        "records": [
            {
                "uuid": "u1",
                "nodes": [{"name": "node1", "uuid": "n1"}, {"name": "node2", "uuid": "n2"}],
            }
        ],
        "num_records": 1,
        "_links": {"next": {"href": f"{HREF}?max_records=1&fields=nodes&offset=1"}},
    }
    assert body == original


def test_strip_links_without_next_drops_links() -> None:
    assert strip_links(run("max_records=5&uuid=u3")) == {
        "records": [{"uuid": "u3"}],
        "num_records": 1,
    }
    assert strip_links(RECORDS[1]) == {k: v for k, v in RECORDS[1].items() if k != "_links"}
    assert strip_links([{"_links": {"next": {}}, "a": 1}]) == [{"a": 1}]
    assert strip_links("text") == "text"
