"""docs/openapi.json: a valid OpenAPI 3.1 document, naming exactly the routes app.py serves, and
true of the local API: an OpenAPI-driven fuzz over HTTP finds no 5xx and no answer the
document does not describe.

The document is checked against the OpenAPI 3.1 specification's own schema by
openapi-spec-validator (which moto[server] already brings; pinned in requirements-dev.txt),
with its `$ref` to docs/schemas/ resolved from the file. The fuzz draws every request from the
document itself: each operation's parameters and body from their schemas (with near misses
and junk mixed in, as a caller would send), through Chalice's local server, the one
`make run` serves, on a stage with stored events on the moto server; each answer must carry a
status the operation documents, with a body that matches that response's schema.
"""

from __future__ import annotations

import json
import re
import time
from collections import Counter
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from urllib.parse import quote, urlencode

import pytest
import requests
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from jsonschema import Draft202012Validator
from openapi_spec_validator import validate
from referencing import Registry, Resource
from referencing.jsonschema import DRAFT202012

from chalicelib.push.signing import SIGNATURE_HEADER, TIMESTAMP_HEADER, compute_signature
from tests.support.api_stage import ApiStage, api_stage
from tests.support.environment import free_port
from tests.support.helpers import cxone_event

PROJECT = Path(__file__).resolve().parents[2]
OPENAPI = PROJECT / "docs" / "openapi.json"
SCHEMAS = PROJECT / "docs" / "schemas"
DOCUMENT = json.loads(OPENAPI.read_text())
METHODS = ("get", "put", "post", "delete", "patch", "head", "options")
OPERATIONS = [
    (path, method, operation)
    for path, item in DOCUMENT["paths"].items()
    for method, operation in item.items()
    if method in METHODS
]
FUZZ = settings(
    max_examples=40,
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.function_scoped_fixture],
)
NEXT_DAY = {"2026-11-29": "2026-11-30"}  # the day api_stage stores its events on, and the next
CONSUMER_NAMES = ["analytics-sink", "crm-updater", "agent-dashboard", "no-such-consumer"]


def test_the_document_is_valid_openapi_3_1() -> None:
    assert DOCUMENT["openapi"].startswith("3.1.")
    validate(DOCUMENT, base_uri=OPENAPI.resolve().as_uri())


def test_every_route_chalice_registers_is_documented_and_nothing_else(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv("AWS_REGION", "us-east-1")  # app.py reads its settings on import
    import app as app_module

    served = {
        (path, method.lower())
        for path, methods in app_module.app.routes.items()
        for method in methods
    }
    documented = {(path, method) for path, method, _ in OPERATIONS}
    assert documented == served


def test_every_operation_is_unique_and_declares_its_path_parameters() -> None:
    ids = [operation["operationId"] for _, _, operation in OPERATIONS]
    assert len(ids) == len(set(ids))
    for path, _, operation in OPERATIONS:
        declared = {p["name"] for p in operation.get("parameters", []) if p["in"] == "path"}
        assert declared == set(re.findall(r"{([^}]+)}", path)), path


def test_push_is_documented_as_signed_without_sigv4() -> None:
    push = DOCUMENT["paths"]["/events"]["post"]
    assert push["security"] == []
    headers = {p["name"] for p in push["parameters"] if p["in"] == "header" and p["required"]}
    assert headers == {"X-Relay-Timestamp", "X-Relay-Signature"}
    assert set(push["responses"]) >= {"200", "400", "401", "413", "415"}
    assert "%2B" in DOCUMENT["info"]["description"]


# ---- the fuzz ------------------------------------------------------------------------------


DOCUMENT_URI = OPENAPI.resolve().as_uri()


def registry() -> Registry:
    """The document and the schema files it names, for `$ref`s resolved as a reader would."""
    resources = [(DOCUMENT_URI, DOCUMENT)]
    resources += [
        (path.resolve().as_uri(), json.loads(path.read_text())) for path in SCHEMAS.glob("*.json")
    ]
    return (
        Registry()
        .with_resources(
            (uri, Resource.from_contents(contents, default_specification=DRAFT202012))
            for uri, contents in resources
        )
        .crawl()  # the schema files' own $id, for their internal references
    )


REGISTRY = registry()


def pointer(*parts: str) -> str:
    """A JSON pointer (RFC 6901) into the document."""
    return "".join("/" + part.replace("~", "~0").replace("/", "~1") for part in parts)


def response_validator(
    path: str, method: str, status: str, media_type: str
) -> Draft202012Validator:
    """A validator for the schema of one documented response, its `$ref`s resolved from the
    document's own location."""
    where = pointer("paths", path, method, "responses", status, "content", media_type, "schema")
    return Draft202012Validator({"$ref": DOCUMENT_URI + "#" + where}, registry=REGISTRY)


def resolved(node: dict[str, Any]) -> dict[str, Any]:
    """A `#/components/...` reference of the document, followed (for drawing values)."""
    while node.get("$ref", "").startswith("#/"):
        target: Any = DOCUMENT
        for part in node["$ref"][2:].split("/"):
            target = target[part]
        node = target
    return node


@st.composite
def rfc3339(draw: st.DrawFn, day: str) -> str:
    hour, minute, second = (
        draw(st.integers(0, 23)),
        draw(st.integers(0, 59)),
        draw(st.integers(0, 59)),
    )
    offset = draw(st.sampled_from(["Z", "z", ".250Z", "+01:00", "-05:30", ".5+00:00"]))
    return f"{day}T{hour:02d}:{minute:02d}:{second:02d}{offset}"


@dataclass(frozen=True)
class LocalApi:
    base_url: str
    stage: ApiStage
    job_ids: list[str]  # jobs that exist, so GET /replay/jobs/{job_id} can answer 200

    def known(self, name: str) -> list[str]:
        """Values of a parameter that name something stored on the stage."""
        return {"interaction_id": self.stage.interactions, "job_id": self.job_ids}.get(name, [])


def values(
    schema: dict[str, Any], api: LocalApi, name: str, hostile: bool
) -> st.SearchStrategy[Any]:
    """Values for one parameter or property: what its schema allows (or names something
    stored), near misses at its limits, and, for a hostile request, also junk."""
    schema = resolved(schema)
    junk = st.text(max_size=20)
    types = schema.get("type")
    stage = api.stage
    if api.known(name):
        fitting: st.SearchStrategy[Any] = st.sampled_from(api.known(name)) | st.text(
            min_size=1, max_size=schema.get("maxLength", 128)
        )
    elif name == "consumers":
        fitting = st.lists(st.sampled_from(CONSUMER_NAMES[:-1]), min_size=1, max_size=3)
        junk = st.lists(st.sampled_from(CONSUMER_NAMES), max_size=3) | junk
    elif name == "since":  # the stored events' day, so that windows find them
        fitting = rfc3339(stage.day)
    elif schema.get("format") == "date-time" or name == "until":  # mostly after since
        fitting = rfc3339(stage.day) | rfc3339(NEXT_DAY[stage.day]) | rfc3339(NEXT_DAY[stage.day])
    elif "pattern" in schema:
        fitting = st.from_regex(schema["pattern"], fullmatch=True)
    elif types == "integer" or types == ["integer", "null"]:
        low, high = schema.get("minimum", 0), schema.get("maximum", 10_000)
        if hostile:  # and just past the limits
            low, high = low - 2, high + 2
        fitting = st.integers(low, high).map(str) if name == "limit" else st.integers(low, high)
    elif "enum" in schema:
        fitting = st.sampled_from(schema["enum"])
    else:
        longest = schema.get("maxLength", 64) + (2 if hostile else 0)
        fitting = st.text(min_size=0 if hostile else schema.get("minLength", 0), max_size=longest)
    return fitting | junk if hostile else fitting


@st.composite
def body_for(draw: st.DrawFn, schema: dict[str, Any], api: LocalApi, hostile: bool) -> Any:
    schema = resolved(schema)
    if hostile and draw(st.booleans()):  # not the documented shape at all
        return draw(st.one_of(st.none(), st.lists(st.integers(), max_size=2), st.text(max_size=10)))
    body = {}
    for name, property_schema in schema.get("properties", {}).items():
        if name in schema.get("required", []) or draw(st.booleans()):
            if name == "events":
                valid = st.sampled_from(api.stage.interactions).map(cxone_event)
                junk = st.dictionaries(st.text(max_size=8), st.text(max_size=8))
                body[name] = draw(st.lists(valid | junk, max_size=11))
            else:
                body[name] = draw(values(property_schema, api, name, hostile))
    if hostile and draw(st.booleans()):
        body["unknown"] = 1
    return body


@st.composite
def request_for(
    draw: st.DrawFn, path: str, method: str, operation: dict[str, Any], api: LocalApi
) -> dict[str, Any]:
    """A request as the document describes it, or (half the time) a hostile one."""
    hostile = draw(st.booleans())
    url_path, query, headers = path, [], {}
    for parameter in operation.get("parameters", []):
        name, where = parameter["name"], parameter["in"]
        if where == "path":
            value = draw(values(parameter["schema"], api, name, hostile).filter(bool))
            url_path = url_path.replace("{" + name + "}", quote(str(value), safe=""))
            continue
        if not parameter.get("required") and draw(st.booleans()):
            continue
        if name == "cursor" and not hostile:  # a real cursor only comes with a previous page
            continue
        value = draw(values(parameter["schema"], api, name, hostile))
        if where == "query":
            query.append((name, str(value)))
        elif where == "header":  # HTTP carries printable ASCII in a header
            headers[name] = "".join(c for c in str(value) if " " <= c <= "~")
    if hostile and query and draw(st.booleans()):  # a repeated parameter
        query.append(query[0])
    body = None
    if "requestBody" in operation:
        body = json.dumps(
            draw(
                body_for(
                    operation["requestBody"]["content"]["application/json"]["schema"], api, hostile
                )
            )
        )
        media_types = ["application/json", "text/plain"] if hostile else ["application/json"]
        headers["Content-Type"] = draw(st.sampled_from(media_types))
    if SIGNATURE_HEADER in headers and not (hostile and draw(st.booleans())):  # signed
        headers[TIMESTAMP_HEADER] = str(int(time.time()))
        signature = compute_signature(
            api.stage.push_secret, headers[TIMESTAMP_HEADER], (body or "").encode()
        )
        headers[SIGNATURE_HEADER] = signature
    # Every value percent-encoded, `+` as %2B: what the document asks of callers.
    target = url_path + ("?" + urlencode(query, quote_via=quote) if query else "")
    return {"method": method.upper(), "target": target, "headers": headers, "body": body}


@pytest.fixture(scope="module")
def local_api(aws_endpoint: str) -> Iterator[LocalApi]:
    """app.py's app served by Chalice's local server (as `make run` serves it) on a free port,
    over a stage with stored events and one re-drive job."""
    from chalice.cli.factory import CLIFactory

    import app as app_module
    from scripts.local.api_server import LocalApiServer

    with api_stage() as stage:
        config = CLIFactory(str(PROJECT)).create_config_obj(chalice_stage_name="local")
        port = free_port()
        server = LocalApiServer(app_module.app, config, port, lambda: {})
        server.start()
        base_url = f"http://127.0.0.1:{port}"
        job = {"since": f"{stage.day}T00:00:00Z", "until": f"{stage.day}T23:59:59Z"}
        created = requests.post(
            f"{base_url}/replay/jobs", json={**job, "consumers": ["crm-updater"]}, timeout=30
        )
        assert created.status_code == 202, created.text
        try:
            yield LocalApi(base_url, stage, [created.json()["job_id"]])
        finally:
            server.stop()


def check_answer(
    path: str, method: str, request: dict[str, Any], response: requests.Response
) -> None:
    operation = DOCUMENT["paths"][path][method]
    where = (
        f"{request['method']} {request['target']} -> {response.status_code}: {response.text[:300]}"
    )
    assert response.status_code < 500, where
    documented = operation["responses"].get(str(response.status_code))
    assert documented is not None, f"undocumented status: {where}"
    content = documented.get("content")
    if not content:
        return
    media_type = response.headers.get("Content-Type", "").split(";")[0]
    assert media_type in content, f"undocumented media type {media_type!r}: {where}"
    if media_type == "application/json" and content[media_type].get("schema"):
        validator = response_validator(path, method, str(response.status_code), media_type)
        errors = [e.message for e in validator.iter_errors(response.json())]
        assert not errors, f"{errors[:3]}: {where}"


@pytest.mark.parametrize(
    ("path", "method", "operation"),
    OPERATIONS,
    ids=[f"{method.upper()} {path}" for path, method, _ in OPERATIONS],
)
def test_fuzzed_requests_get_only_documented_answers(
    local_api: LocalApi, path: str, method: str, operation: dict[str, Any]
) -> None:
    http = requests.Session()
    statuses: Counter[int] = Counter()

    @FUZZ
    @given(st.data())
    def fuzz(data: st.DataObject) -> None:
        request = data.draw(request_for(path, method, operation, local_api))
        response = http.request(
            request["method"],
            local_api.base_url + request["target"],
            headers=request["headers"],
            data=request["body"],
            timeout=30,
        )
        statuses[response.status_code] += 1
        check_answer(path, method, request, response)

    fuzz()
    # The fuzz reached the operation's success and its refusals, not only one of them.
    assert any(status < 300 for status in statuses), statuses
    if operation.get("parameters") or "requestBody" in operation:
        assert any(400 <= status < 500 for status in statuses), statuses
