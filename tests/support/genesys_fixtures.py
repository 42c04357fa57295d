"""What each Genesys Cloud sample under tests/fixtures/genesys must become: the fixtures' fake
id scheme and, per file, the fields the Genesys profile's contract table gives it. Shared by
the Genesys profile tests and the provider conformance tests.
"""

from __future__ import annotations


def uuid(tag: str, number: int) -> str:
    """The fixtures' fake id scheme: <8-hex tag>-0000-4000-8000-<n>."""
    return f"{tag}-0000-4000-8000-{number:012x}"


def conversation(n: int) -> str:
    return uuid("c0c0c0c0", n)


def participant(n: int) -> str:
    return uuid("9a9a9a9a", n)


def user(n: int) -> str:
    return uuid("a5a5a5a5", n)


# file -> (interaction_id, participant_id, state, stage, occurred_at)
EXPECTED: dict[str, tuple[str, str | None, str, str | None, str]] = {
    "audits.OAuthClient.json": (
        uuid("0c1e0c1e", 1),
        user(3),
        "OAuthClient",
        None,
        "2021-05-31T09:49:25.000Z",
    ),
    "audits.UserPresence.json": (
        user(2),
        user(2),
        "UserPresence",
        None,
        "2021-06-25T15:11:52.000Z",
    ),
    "conversation.acd.end.json": (
        conversation(1),
        participant(1),
        "acd.end",
        "Offered",
        "2025-12-12T15:04:25.126Z",
    ),
    "conversation.acd.start.json": (
        conversation(1),
        participant(1),
        "acd.start",
        "Queued",
        "2025-12-12T15:03:45.452Z",
    ),
    "conversation.acw.json": (
        conversation(2),
        participant(2),
        "acw",
        "WrapUp",
        "2025-12-12T15:15:21.657Z",
    ),
    "conversation.customer.end.chat-no-external-contact.json": (
        conversation(6),
        participant(6),
        "customer.end",
        "Closed",
        "2022-04-06T09:31:44.949Z",
    ),
    "conversation.customer.end.chat.json": (
        conversation(6),
        participant(6),
        "customer.end",
        "Closed",
        "2022-04-06T09:31:44.949Z",
    ),
    "conversation.customer.end.json": (
        conversation(3),
        participant(3),
        "customer.end",
        "Closed",
        "2025-12-12T15:01:53.383Z",
    ),
    "conversation.customer.start.json": (
        conversation(6),
        participant(6),
        "customer.start",
        None,
        "2022-04-06T09:30:44.949Z",
    ),
    "conversation.flow.end.json": (
        conversation(4),
        participant(4),
        "flow.end",
        None,
        "2025-12-12T15:00:30.042Z",
    ),
    "conversation.flow.outcome.json": (
        conversation(5),
        participant(5),
        "flow.outcome",
        None,
        "2025-12-12T15:02:30.107Z",
    ),
    "conversation.user.end.json": (
        conversation(2),
        participant(2),
        "user.end",
        None,
        "2025-12-12T15:15:07.657Z",
    ),
    "conversation.user.start.json": (
        conversation(2),
        participant(2),
        "user.start",
        "Connected",
        "2025-12-12T15:06:21.279Z",
    ),
    # eventTime is an RFC 3339 string on this topic; no participantId or userId.
    "conversations.transcription.json": (
        conversation(7),
        None,
        "transcription",
        None,
        "2026-03-19T22:04:48.128Z",
    ),
    # No eventTime: occurred_at comes from detail.timestamp.
    "users.presence.json": (user(1), None, "presence", None, "2025-12-12T14:53:20.312Z"),
    "users.routingStatus.json": (user(1), None, "routingStatus", None, "2025-12-12T15:06:21.591Z"),
}
