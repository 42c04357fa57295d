"""Every route's parameters fuzzed (hypothesis) through chalice.test.Client over app.py's app,
against a stage with stored events on the moto server: whatever a caller sends, the answer is
never a server error, never a stack trace, never an internal key name (`assert_safe`).

Inputs mix the well-formed with the hostile: real cursors of this stage, altered or used on the
other route; RFC 3339 times and near misses; numbers at and past the limits; any Unicode text;
path parameters with '/', '%', '..', control characters; JSON bodies of every shape; and for
POST /events, headers of every shape, signed or not, over bodies of every shape.
"""

from __future__ import annotations

import json
import string
import time
import uuid
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from typing import Any
from urllib.parse import quote, urlencode

import pytest
from hypothesis import HealthCheck, event, given, settings
from hypothesis import strategies as st

from chalicelib.push.signing import compute_signature
from tests.support.api_stage import ApiStage, api_stage, assert_safe
from tests.support.helpers import cxone_event

FUZZ = settings(
    max_examples=60,
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large],
)
PARAMETERS = ("limit", "cursor", "since", "until", "detail_type", "interaction_id")
ROUTE_CHARS = st.characters(blacklist_categories=("Cs",))  # a URL cannot carry a lone surrogate
PRINTABLE = st.text(alphabet=string.printable.strip() + " ", max_size=40)


@pytest.fixture(scope="module")
def stage(aws_endpoint: str) -> Iterator[ApiStage]:
    with api_stage() as api:
        yield api


@pytest.fixture(scope="module")
def cursors(stage: ApiStage) -> list[str]:
    """Real cursors of both listings, issued by this stage."""
    found = []
    for interaction in stage.interactions:
        response = stage.client.http.get(f"/interactions/{quote(interaction)}/events?limit=2")
        found.append(json.loads(response.body)["next_cursor"])
    window = urlencode(
        {"since": f"{stage.day}T00:00:00Z", "until": f"{stage.day}T23:59:59Z", "limit": "2"}
    )
    found.append(json.loads(stage.client.http.get(f"/replay?{window}").body)["next_cursor"])
    assert all(found), "the seeded stage should need more than one page"
    return found


# --------------------------------------------------------------------------- strategies


def moments() -> st.SearchStrategy[str]:
    """Times as a caller might write them: RFC 3339 in several forms, and near misses."""
    instants = st.datetimes(
        min_value=datetime(1969, 1, 1), max_value=datetime(2100, 1, 1), timezones=st.just(UTC)
    )
    return st.one_of(
        instants.map(lambda d: d.isoformat()),
        instants.map(lambda d: d.strftime("%Y-%m-%dT%H:%M:%S.%fZ")),
        instants.map(lambda d: d.astimezone(UTC).strftime("%Y-%m-%d %H:%M:%S")),
        instants.map(lambda d: d.strftime("%Y-%m-%d")),
        instants.map(lambda d: str(int(d.timestamp()))),
        st.sampled_from(
            ["2026-11-29T09:00:00Z", "2026-11-30T00:00:00Z", "2026-02-30T00:00:00Z", "now"]
        ),
    )


def altered(cursor: str) -> st.SearchStrategy[str]:
    """A real cursor, changed the ways a careless or hostile caller would change it."""
    payload, _, signature = cursor.partition(".")
    return st.one_of(
        st.just(cursor),
        st.integers(0, len(cursor) - 1).map(lambda i: cursor[:i] + "A" + cursor[i + 1 :]),
        st.integers(0, len(cursor)).map(lambda i: cursor[:i]),
        st.just(payload + "." + signature[::-1]),
        st.just(payload),
        st.just(cursor + "=="),
        st.just(signature + "." + payload),
    )


@st.composite
def query_values(draw: st.DrawFn, cursors: list[str]) -> str:
    return draw(
        st.one_of(
            st.text(alphabet=ROUTE_CHARS, max_size=40),
            st.integers(-(10**6), 10**13).map(str),
            st.sampled_from(
                ["", "0", "1", "1000", "1001", "-1", "1e3", "2.5", "NaN", "null", "[]", "%00"]
            ),
            moments(),
            st.sampled_from(cursors).flatmap(altered),
            st.from_regex(r"[A-Za-z0-9_-]{0,120}\.[A-Za-z0-9_-]{0,60}", fullmatch=True),
            st.text(alphabet="A", min_size=2040, max_size=2100),
        )
    )


@st.composite
def queries(draw: st.DrawFn, cursors: list[str]) -> list[tuple[str, str]]:
    names = st.one_of(st.sampled_from(PARAMETERS), st.text(alphabet=ROUTE_CHARS, min_size=1))
    return draw(st.lists(st.tuples(names, query_values(cursors)), max_size=6))


def path_values() -> st.SearchStrategy[str]:
    return st.one_of(
        st.text(alphabet=ROUTE_CHARS, min_size=1, max_size=150),
        st.sampled_from([".", "..", "%", "%2F", "a/b", "int-0?x=1", "\x00", "0" * 32]),
    )


def json_values() -> st.SearchStrategy[Any]:
    scalars = st.one_of(
        st.none(),
        st.booleans(),
        st.integers(-(2**70), 2**70),
        st.floats(allow_nan=False, allow_infinity=False),  # what json.dumps keeps JSON
        st.text(alphabet=ROUTE_CHARS, max_size=30),
        moments(),
    )
    return st.recursive(
        scalars,
        lambda inner: st.one_of(
            st.lists(inner, max_size=4),
            st.dictionaries(st.text(alphabet=ROUTE_CHARS, max_size=10), inner, max_size=4),
        ),
        max_leaves=12,
    )


def job_requests() -> st.SearchStrategy[bytes]:
    fields = {
        "since": moments() | json_values(),
        "until": moments() | json_values(),
        "consumers": st.lists(
            st.sampled_from(["analytics-sink", "crm-updater", "nobody"]) | json_values(),
            max_size=3,
        )
        | json_values(),
        "detail_type": json_values(),
        "interaction_id": json_values(),
    }
    documents = (
        st.fixed_dictionaries({}, optional={**fields, "extra": json_values()}) | json_values()
    )
    plausible = st.fixed_dictionaries(
        {
            "since": st.just("2026-11-29T00:00:00Z"),
            "until": st.sampled_from(["2026-11-29T12:00:00Z", "2026-11-30T00:00:00.000+00:00"]),
            "consumers": st.lists(
                st.sampled_from(["analytics-sink", "crm-updater"]), min_size=1, max_size=2
            ),
        },
        optional={"detail_type": st.text(alphabet=ROUTE_CHARS, min_size=1, max_size=20)},
    )
    return st.one_of(
        (documents | plausible).map(lambda d: json.dumps(d).encode()),
        st.binary(max_size=200),
        st.just(b""),
    )


def sent_text(*parts: Any) -> str:
    return " ".join(
        part.decode("utf-8", "replace") if isinstance(part, bytes) else str(part) for part in parts
    )


# --------------------------------------------------------------------------- the routes


@FUZZ
@given(data=st.data())
def test_timeline_parameters(stage: ApiStage, cursors: list[str], data: st.DataObject) -> None:
    interaction = data.draw(st.sampled_from(stage.interactions) | path_values())
    query = data.draw(queries(cursors))
    path = f"/interactions/{quote(interaction, safe='')}/events"
    url = path + ("?" + urlencode(query) if query else "")

    response = stage.client.http.get(url)

    event(f"status {response.status_code}")  # shown by --hypothesis-show-statistics
    assert_safe(response, sent_text(url, interaction, query))


@FUZZ
@given(data=st.data())
def test_replay_listing_parameters(
    stage: ApiStage, cursors: list[str], data: st.DataObject
) -> None:
    window = data.draw(
        st.just([("since", f"{stage.day}T00:00:00Z"), ("until", f"{stage.day}T12:00:00Z")])
        | st.just([])
    )
    plausible = st.lists(
        st.one_of(
            st.tuples(st.just("limit"), st.integers(1, 1000).map(str)),
            st.tuples(st.just("interaction_id"), st.sampled_from(stage.interactions)),
            st.tuples(st.just("detail_type"), st.just("Interaction.Lifecycle.StageChanged")),
            st.tuples(st.just("cursor"), st.sampled_from(cursors)),
        ),
        max_size=2,
        unique_by=lambda pair: pair[0],
    )
    query = window + data.draw(plausible | queries(cursors))
    url = "/replay" + ("?" + urlencode(query) if query else "")

    response = stage.client.http.get(url)

    event(f"status {response.status_code}")
    assert_safe(response, sent_text(url, query))


@FUZZ
@given(body=job_requests())
def test_replay_job_requests(stage: ApiStage, body: bytes) -> None:
    response = stage.client.http.post(
        "/replay/jobs", headers={"Content-Type": "application/json"}, body=body
    )

    event(f"status {response.status_code}")
    assert_safe(response, sent_text(body))
    assert response.status_code in (202, 400)


@FUZZ
@given(job_id=path_values())
def test_replay_job_status(stage: ApiStage, job_id: str) -> None:
    response = stage.client.http.get(f"/replay/jobs/{quote(job_id, safe='')}")

    assert_safe(response, sent_text(job_id))
    assert response.status_code == 404


NEAR_NOW = "\x00now"  # a header value for "now + offset" (no printable header starts so)


def header_values() -> st.SearchStrategy[str]:
    # Times near now are drawn as offsets: a strategy must not depend on the clock, or
    # hypothesis could not replay an example.
    return st.one_of(
        st.integers(-600, 600).map(lambda offset: f"{NEAR_NOW}{offset}"),
        st.integers(-(10**15), 10**15).map(str),
        PRINTABLE,
        st.from_regex(r"sha256=[0-9a-fA-F]{0,80}", fullmatch=True),
    )


def resolved(value: str, now: int) -> str:
    return str(now + int(value.removeprefix(NEAR_NOW))) if value.startswith(NEAR_NOW) else value


@FUZZ
@given(data=st.data())
def test_post_events_headers_and_bodies(stage: ApiStage, data: st.DataObject) -> None:
    """Unsigned, badly signed and oddly signed requests: refused, never a server error."""
    body = data.draw(st.binary(max_size=300) | json_values().map(lambda v: json.dumps(v).encode()))
    drawn = data.draw(
        st.dictionaries(
            st.sampled_from(
                ["X-Relay-Timestamp", "x-relay-signature", "X-Relay-Signature", "Content-Type"]
            ),
            header_values(),
            max_size=4,
        )
    )
    now = int(time.time())
    headers = {name: resolved(value, now) for name, value in drawn.items()}
    headers.setdefault("Content-Type", "application/json")

    response = stage.client.http.post("/events", headers=headers, body=body)

    event(f"status {response.status_code}")
    assert_safe(response, sent_text(body, headers))
    assert stage.push_secret not in response.body.decode("utf-8", "replace")


@st.composite
def pushed_events(draw: st.DrawFn) -> Any:
    """A CXone event with random parts replaced, removed or added; or any JSON value."""
    envelope: dict[str, Any] = cxone_event(
        draw(st.text(alphabet=ROUTE_CHARS, min_size=1, max_size=20)),
        "Connected",
        draw(st.integers(0, 100)),
        provider_event_id=draw(st.none() | st.text(alphabet=ROUTE_CHARS, max_size=20)),
    )
    for _ in range(draw(st.integers(0, 3))):
        targets = [part for part in (envelope, envelope.get("detail")) if isinstance(part, dict)]
        where = draw(st.sampled_from(targets))
        key = draw(st.sampled_from([*where.keys(), "resources", "metadata", "sequence"]))
        if draw(st.booleans()):
            where[key] = draw(json_values())
        else:
            where.pop(key, None)
    return draw(st.just(envelope) | json_values())


# Clock offsets of the signature, clear of the 300 s window's edge (a second may tick between
# signing and checking).
OFFSETS = st.integers(-290, 290) | st.integers(310, 400) | st.integers(-400, -310)


@FUZZ
@given(events=st.lists(pushed_events(), max_size=12), offset=OFFSETS)
def test_signed_post_events_bodies(stage: ApiStage, events: list[Any], offset: int) -> None:
    """Correctly signed requests (so every later check runs) over batches of mangled events."""
    # A request id of its own: hypothesis may send the same batch twice within a second, and
    # the same signature twice is a replay (refused, rightly, and tested in test_push.py).
    body = json.dumps({"events": events, "request": uuid.uuid4().hex}).encode()
    timestamp = str(int(time.time()) + offset)
    headers = {
        "Content-Type": "application/json",
        "X-Relay-Timestamp": timestamp,
        "X-Relay-Signature": compute_signature(stage.push_secret, timestamp, body),
    }

    response = stage.client.http.post("/events", headers=headers, body=body)

    event(f"status {response.status_code}")
    assert_safe(response, sent_text(body))
    text = response.body.decode()
    assert stage.push_secret not in text
    assert headers["X-Relay-Signature"].removeprefix("sha256=") not in text
    expected = 401 if abs(offset) > 300 else (400 if not 1 <= len(events) <= 10 else 200)
    assert response.status_code == expected, text[:300]
    if expected == 200:
        results = json.loads(text)["results"]
        assert [r["index"] for r in results] == list(range(len(events)))


def test_the_fuzzed_stage_serves_real_pages(stage: ApiStage, cursors: list[str]) -> None:
    """The fuzz runs against a stage that answers: its listings return stored events and
    their cursors lead on (so a fuzzed cursor starts from real ones)."""
    interaction = stage.interactions[0]
    url = f"/interactions/{quote(interaction)}/events?limit=2&cursor={quote(cursors[0])}"
    body = json.loads(stage.client.http.get(url).body)
    assert [e["sequence"] for e in body["events"]] == [3, 4]
    since = datetime.fromisoformat(f"{stage.day}T00:00:00+00:00")
    window = urlencode(
        {
            "since": since.strftime("%Y-%m-%dT%H:%M:%SZ"),
            "until": (since + timedelta(days=1)).strftime("%Y-%m-%dT%H:%M:%SZ"),
        }
    )
    listed = json.loads(stage.client.http.get(f"/replay?{window}").body)["events"]
    assert len(listed) == 15
