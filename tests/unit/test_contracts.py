"""The typed contracts and the foundations' small decisions: the TypedDicts of model.py name
exactly the fields the contracts list, and settings that would make a stage misbehave are
refused at cold start, in the configuration family, naming the variable."""

from __future__ import annotations

from typing import get_args

import pytest

from chalicelib.config import BATCH_FAILURE_MODES, BatchFailureMode, load_settings
from chalicelib.errors import ConfigurationError, PoisonReason
from chalicelib.formats import one_of
from chalicelib.model import DeliveredMessage, EventPage, QuarantineMessage, SqsBatchResponse
from chalicelib.replay.jobs import JOB_STATUSES, JobStatus, job_from_item
from tests.support.helpers import DELIVERED_FIELDS

# The quarantine-message contract: what a quarantine subscriber receives.
QUARANTINE_FIELDS = {
    "reason",
    "errors",
    "raw",
    "raw_bytes",
    "raw_sha256",
    "message_id",
    "received_at",
}


def test_the_delivered_message_type_names_exactly_the_contracts_fields() -> None:
    assert DeliveredMessage.__required_keys__ == DELIVERED_FIELDS
    assert DeliveredMessage.__optional_keys__ == frozenset()


def test_the_quarantine_message_type_names_exactly_the_contracts_fields() -> None:
    assert QuarantineMessage.__required_keys__ == QUARANTINE_FIELDS
    assert set(get_args(PoisonReason)) == {"unparseable", "invalid", "too_large"}


def test_listing_and_lambda_responses_have_the_contracts_keys() -> None:
    assert EventPage.__required_keys__ == {"events", "next_cursor"}
    assert SqsBatchResponse.__required_keys__ == {"batchItemFailures"}


def test_literal_tables_list_every_value_of_their_type() -> None:
    # The runtime tuples are what stored or configured strings are checked against.
    assert set(JOB_STATUSES) == set(get_args(JobStatus)) == {"queued", "running", "done", "failed"}
    assert set(BATCH_FAILURE_MODES) == set(get_args(BatchFailureMode))


def test_one_of_returns_the_matching_choice_or_none() -> None:
    assert one_of("done", JOB_STATUSES) == "done"
    assert one_of("Done", JOB_STATUSES) is None
    assert one_of("", JOB_STATUSES) is None


@pytest.mark.parametrize("mode", ["report", "raise"])
def test_both_batch_failure_modes_are_accepted(mode: str) -> None:
    settings = load_settings({"AWS_REGION": "us-east-1", "RELAY_BATCH_FAILURE_MODE": mode})
    assert settings.batch_failure_mode == mode


def test_an_unknown_batch_failure_mode_fails_at_cold_start_naming_the_variable() -> None:
    with pytest.raises(ConfigurationError, match=r"RELAY_BATCH_FAILURE_MODE.*'delete'"):
        load_settings({"AWS_REGION": "us-east-1", "RELAY_BATCH_FAILURE_MODE": "delete"})


def test_a_missing_region_is_a_configuration_error() -> None:
    with pytest.raises(ConfigurationError, match="AWS_REGION"):
        load_settings({})


def test_a_stored_job_with_an_unknown_status_is_refused_not_shown() -> None:
    item = {
        "job_id": {"S": "0" * 32},
        "status": {"S": "paused"},
        "since": {"S": "2026-11-29T00:00:00.000Z"},
        "until": {"S": "2026-11-30T00:00:00.000Z"},
        "consumers": {"L": [{"S": "crm-updater"}]},
    }
    with pytest.raises(ValueError, match="unknown status 'paused'"):
        job_from_item(item)
    item["status"] = {"S": "running"}
    assert job_from_item(item).status == "running"
