"""Parameter parsing of the REST API: every bad input names its parameter."""

from __future__ import annotations

import json

import pytest
from hypothesis import given
from hypothesis import strategies as st

from chalicelib.api.params import (
    ParameterError,
    normalised,
    parse_job_request,
    parse_timeline,
    parse_window,
)
from chalicelib.config import Settings, load_settings
from chalicelib.formats import parse_rfc3339

SINCE = "2026-11-29T09:00:00Z"
UNTIL = "2026-11-29T10:00:00Z"


@pytest.fixture
def settings() -> Settings:
    return load_settings(
        {"AWS_REGION": "us-east-1", "RELAY_STAGE": "dev", "RELAY_STORE_RETENTION_DAYS": "30"}
    )


def _window(settings: Settings, **params: str) -> object:
    return parse_window({name: [value] for name, value in params.items()}, settings)


def _errors(call: object, *args: object, **kwargs: object) -> dict[str, list[str]]:
    with pytest.raises(ParameterError) as raised:
        call(*args, **kwargs)  # type: ignore[operator]
    return raised.value.errors


# ---- /replay --------------------------------------------------------------------------------


def test_window_defaults_and_normalisation(settings: Settings) -> None:
    query = _window(settings, since="2026-11-29T10:00:00+01:00", until="2026-11-29T09:30:00.5Z")
    assert query.since == "2026-11-29T09:00:00.000Z"
    assert query.until == "2026-11-29T09:30:00.500Z"
    assert (query.limit, query.cursor, query.detail_type, query.interaction_id) == (
        100,
        None,
        None,
        None,
    )


def test_sub_millisecond_times_round_up_so_bounds_stay_exact() -> None:
    # occurred_at >= 09:00:00.0001 holds for 09:00:00.001 and later, not for 09:00:00.000.
    assert normalised(parse_rfc3339("2026-11-29T09:00:00.0001Z")) == "2026-11-29T09:00:00.001Z"
    assert normalised(parse_rfc3339("2026-11-29T09:00:00.999999Z")) == "2026-11-29T09:00:01.000Z"
    assert normalised(parse_rfc3339("2026-11-29T09:00:00.123Z")) == "2026-11-29T09:00:00.123Z"


@pytest.mark.parametrize(
    "text",
    [
        "2026-11-29 09:00:00",
        "2026-11-29T09:00:00",
        "2026-11-29 09:00:00Z",
        "2026-11-29",
        "20261129T090000Z",
        "2026-11-29T09:00Z",
        "2026-11-29T09:00:00+0100",
        "2026-11-29T09:00:00.Z",
        "2026-13-01T09:00:00Z",
        "2026-02-30T09:00:00Z",
        "2026-11-29T24:00:00Z",
        "2026-11-29T09:00:00+24:00",
        "\u0662\u0660\u0662\u0666-11-29T09:00:00Z",
        "",
        "now",
    ],
)
def test_non_rfc3339_since_is_refused(settings: Settings, text: str) -> None:
    errors = _errors(_window, settings, since=text, until=UNTIL)
    assert list(errors) == ["since"]


@pytest.mark.parametrize(
    "text",
    ["2026-11-29T09:00:00Z", "2026-11-29t09:00:00z", "2026-11-29T09:00:00.123456789-05:30"],
)
def test_rfc3339_forms_are_accepted(settings: Settings, text: str) -> None:
    query = _window(settings, since=text, until="2026-11-30T00:00:00Z")
    assert query.since.endswith("Z")


@pytest.mark.parametrize(
    "limit", ["0", "1001", "x", "-1", "1.0", "1e3", " 5", "", "\u0665", "99999999999999"]
)
def test_bad_limit(settings: Settings, limit: str) -> None:
    errors = _errors(_window, settings, since=SINCE, until=UNTIL, limit=limit)
    assert list(errors) == ["limit"]
    assert "from 1 to 1000" in errors["limit"][0]


@pytest.mark.parametrize("limit", ["1", "1000", "0042"])
def test_good_limit(settings: Settings, limit: str) -> None:
    assert _window(settings, since=SINCE, until=UNTIL, limit=limit).limit == int(limit)


def test_missing_since_and_until_are_both_named(settings: Settings) -> None:
    errors = _errors(_window, settings)
    assert set(errors) == {"since", "until"}
    assert "required" in errors["since"][0]


@pytest.mark.parametrize(
    ("since", "until"),
    [(UNTIL, SINCE), (SINCE, SINCE), ("2026-11-29T09:00:00.001Z", "2026-11-29T09:00:00.0005Z")],
)
def test_until_must_be_after_since(settings: Settings, since: str, until: str) -> None:
    errors = _errors(_window, settings, since=since, until=until)
    assert errors == {"until": ["must be later than since"]}


def test_window_up_to_retention_is_allowed_longer_is_not(settings: Settings) -> None:
    assert _window(settings, since="2026-11-01T00:00:00Z", until="2026-12-01T00:00:00Z")
    errors = _errors(
        _window, settings, since="2026-11-01T00:00:00Z", until="2026-12-01T00:00:00.001Z"
    )
    assert list(errors) == ["until"]
    assert "retention (30 days)" in errors["until"][0]


def test_filters_are_bounded(settings: Settings) -> None:
    errors = _errors(
        _window, settings, since=SINCE, until=UNTIL, interaction_id="i" * 129, detail_type=""
    )
    assert set(errors) == {"interaction_id", "detail_type"}


def test_unknown_and_repeated_parameters(settings: Settings) -> None:
    assert _errors(_window, settings, since=SINCE, until=UNTIL, sinse="x") == {
        "sinse": ["is not a parameter of this request"]
    }
    errors = _errors(parse_window, {"since": [SINCE, SINCE], "until": [UNTIL]}, settings)
    assert errors == {"since": ["is given 2 times; give it once"]}


def test_message_lists_every_problem_by_name(settings: Settings) -> None:
    with pytest.raises(ParameterError) as raised:
        _window(settings, since="yesterday", until=UNTIL, limit="0")
    message = str(raised.value)
    assert message.startswith("since: 'yesterday' is not an RFC 3339 timestamp")
    assert "; limit: must be a whole number from 1 to 1000, got '0'" in message


def test_empty_cursor_means_first_page(settings: Settings) -> None:
    assert _window(settings, since=SINCE, until=UNTIL, cursor="").cursor is None


def test_cursor_filters_ignore_page_size_and_cursor(settings: Settings) -> None:
    first = _window(settings, since=SINCE, until=UNTIL, limit="5")
    second = _window(settings, since=SINCE, until=UNTIL, limit="50", cursor="abc")
    other = _window(settings, since=SINCE, until=UNTIL, detail_type="Routing.StateChanged")
    assert first.cursor_filters() == second.cursor_filters() != other.cursor_filters()


@given(st.text(max_size=40))
def test_any_since_text_gives_a_result_or_a_named_error(text: str) -> None:
    settings = load_settings({"AWS_REGION": "us-east-1"})
    try:
        parse_window({"since": [text], "until": ["2026-11-29T10:00:00Z"]}, settings)
    except ParameterError as error:
        assert set(error.errors) <= {"since", "until"}


# ---- timeline -------------------------------------------------------------------------------


def test_timeline_parameters() -> None:
    query = parse_timeline("int-1", {"limit": ["7"]})
    assert (query.interaction_id, query.limit, query.cursor) == ("int-1", 7, None)
    assert parse_timeline("int-1", None).limit == 100
    assert list(_errors(parse_timeline, "", None)) == ["interaction_id"]
    assert list(_errors(parse_timeline, "x" * 129, None)) == ["interaction_id"]
    assert list(_errors(parse_timeline, "int-1", {"since": [SINCE]})) == ["since"]
    assert list(_errors(parse_timeline, "int-1", {"interaction_id": ["b"]})) == ["interaction_id"]


# ---- POST /replay/jobs ----------------------------------------------------------------------


def _body(**fields: object) -> bytes:
    return json.dumps({"since": SINCE, "until": UNTIL, **fields}).encode()


def test_job_request(settings: Settings) -> None:
    request = parse_job_request(
        _body(consumers=["crm-updater", "agent-dashboard", "crm-updater"], detail_type="X"),
        settings,
    )
    assert request.consumers == ("crm-updater", "agent-dashboard")  # duplicates collapsed
    assert (request.since, request.until, request.detail_type, request.interaction_id) == (
        "2026-11-29T09:00:00.000Z",
        "2026-11-29T10:00:00.000Z",
        "X",
        None,
    )


def test_unknown_consumer_is_named(settings: Settings) -> None:
    errors = _errors(parse_job_request, _body(consumers=["crm-updater", "billing"]), settings)
    assert errors == {
        "consumers": [
            "unknown consumer 'billing'; configured consumers: "
            "analytics-sink, crm-updater, agent-dashboard"
        ]
    }


@pytest.mark.parametrize(
    ("consumers", "says"),
    [([], "non-empty"), ("crm-updater", "non-empty array"), ([1], "strings"), (None, "null")],
)
def test_bad_consumer_lists(settings: Settings, consumers: object, says: str) -> None:
    errors = _errors(parse_job_request, _body(consumers=consumers), settings)
    assert list(errors) == ["consumers"]
    assert says in errors["consumers"][0]


@pytest.mark.parametrize(
    ("body", "says"),
    [
        (b"", "is empty"),
        (b"   ", "is empty"),
        (b"{", "not valid JSON"),
        (b"\xff\xfe", "not valid JSON"),
        (b"[]", "JSON object"),
        (b'"text"', "JSON object"),
        (b"x" * 70000, "larger than"),
    ],
)
def test_bad_bodies(settings: Settings, body: bytes, says: str) -> None:
    errors = _errors(parse_job_request, body, settings)
    assert list(errors) == ["body"]
    assert says in errors["body"][0]


def test_job_window_rules_match_the_listing(settings: Settings) -> None:
    errors = _errors(
        parse_job_request, _body(since="2026-11-29 09:00:00", consumers=["x"]), settings
    )
    assert list(errors) == ["since", "consumers"]
    errors = _errors(
        parse_job_request, _body(since=UNTIL, until=SINCE, consumers=["crm-updater"]), settings
    )
    assert errors == {"until": ["must be later than since"]}
    errors = _errors(parse_job_request, _body(consumers=["crm-updater"], extra=True), settings)
    assert errors == {"extra": ["is not a parameter of this request"]}
