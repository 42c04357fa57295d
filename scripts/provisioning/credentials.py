"""Provisioning step `credentials`: the CXone client credentials and the push signing secret.

The credentials come from stdin (a JSON object, or two lines: id then secret) or, at a
terminal, from a prompt that does not echo the secret; never from argv, where they would land
in shell history and in every process listing. They are checked with the same parser the
`refresh_token` schedule uses, so what is stored is what it can read. Nothing here prints,
logs or raises a secret: actions and errors name secrets and keys, never values.

The push signing secret (the HMAC key of `POST /events`) is generated here once, as 64 hex
characters, and never replaced by a re-run: rotating it is a deliberate act shared with the
sender.
"""

from __future__ import annotations

import getpass
import json
import secrets
from collections.abc import Callable
from typing import Any, TextIO

from botocore.exceptions import ClientError

from chalicelib.aws import error_code
from chalicelib.cxone.client import AUTH_MODE_ACCESS_KEY
from chalicelib.cxone.tokens import CredentialsError, parse_credentials
from scripts.provisioning.actions import Action

CLIENT_KEYS = ("client_id", "client_secret")
ACCESS_KEY_KEYS = ("access_key_id", "access_key_secret")
ALLOWED_KEYS = frozenset((*CLIENT_KEYS, *ACCESS_KEY_KEYS))
PUSH_SECRET_BYTES = 32


class CredentialsInputError(ValueError):
    """The credentials given are malformed; the message names keys or lines, never values."""


class SecretStateError(RuntimeError):
    """A secret exists but cannot be used as it is (e.g. scheduled for deletion)."""


def identifier_keys(auth_mode: str) -> tuple[str, str]:
    """The (id, secret) keys that the two-line form fills, for the auth mode."""
    return ACCESS_KEY_KEYS if auth_mode == AUTH_MODE_ACCESS_KEY else CLIENT_KEYS


def parse_credentials_input(text: str, auth_mode: str, secret_name: str) -> dict[str, str]:
    """The credentials secret's content from what the user typed or piped."""
    stripped = text.strip()
    if stripped.startswith("{"):
        try:
            body: Any = json.loads(stripped)
        except ValueError:
            # The decoder's message quotes the input: say where, not what.
            raise CredentialsInputError(
                "the credentials look like JSON but do not parse; give a JSON object such as "
                '{"client_id": "...", "client_secret": "..."}'
            ) from None
        if not isinstance(body, dict):
            raise CredentialsInputError("the credentials JSON must be an object")
        unknown = sorted(str(key) for key in body if key not in ALLOWED_KEYS)
        if unknown:
            raise CredentialsInputError(
                f"unknown key(s) in the credentials JSON: {', '.join(unknown)}; allowed: "
                f"{', '.join(sorted(ALLOWED_KEYS))}"
            )
        not_text = sorted(key for key, value in body.items() if not isinstance(value, str))
        if not_text:
            raise CredentialsInputError(
                f"credential value(s) must be strings: {', '.join(not_text)}"
            )
        credentials = {key: value.strip() for key, value in body.items() if value.strip()}
    else:
        lines = [line.strip() for line in stripped.splitlines() if line.strip()]
        if len(lines) != 2:
            id_key, secret_key = identifier_keys(auth_mode)
            raise CredentialsInputError(
                f"expected two non-empty lines ({id_key}, then {secret_key}) or a JSON object, "
                f"got {len(lines)} line(s)"
            )
        credentials = dict(zip(identifier_keys(auth_mode), lines, strict=True))
    try:
        # The schedule's own parser: what it cannot read is refused before it is stored.
        parse_credentials(json.dumps(credentials), auth_mode, secret_name)
    except CredentialsError as error:
        raise CredentialsInputError(str(error)) from None
    return credentials


def read_credentials_input(
    stdin: TextIO,
    auth_mode: str,
    secret_name: str,
    prompt_secret: Callable[[str], str] = getpass.getpass,
    prompt_text: Callable[[str], str] = input,
) -> dict[str, str]:
    """From stdin when it is piped; else prompt (the secret without echo)."""
    if stdin.isatty():
        id_key, secret_key = identifier_keys(auth_mode)
        identifier = prompt_text(f"CXone {id_key.replace('_', ' ')}: ")
        secret = prompt_secret(f"CXone {secret_key.replace('_', ' ')} (not echoed): ")
        text = f"{identifier}\n{secret}\n"
    else:
        text = stdin.read()
    return parse_credentials_input(text, auth_mode, secret_name)


def _current_secret_string(secrets_client: Any, name: str) -> tuple[bool, str | None]:
    """(exists, current value); a secret created without a value exists with None."""
    try:
        return True, secrets_client.get_secret_value(SecretId=name).get("SecretString")
    except ClientError as error:
        code = error_code(error)
        if code == "InvalidRequestException":
            raise SecretStateError(
                f"secret {name} cannot be read: it is probably scheduled for deletion; restore "
                f"it (aws secretsmanager restore-secret --secret-id {name}) or wait until it is "
                "deleted, then re-run this step"
            ) from None
        if code != "ResourceNotFoundException":
            raise
    try:
        secrets_client.describe_secret(SecretId=name)
        return True, None
    except ClientError as error:
        if error_code(error) == "ResourceNotFoundException":
            return False, None
        raise


def _same_json(current: str | None, desired: str) -> bool:
    if current is None:
        return False
    try:
        return json.loads(current) == json.loads(desired)
    except ValueError:
        return False


def ensure_credentials_secret(
    secrets_client: Any, name: str, credentials: dict[str, str], dry_run: bool
) -> Action:
    """The secret holds exactly these credentials: created, updated, or left as it is."""
    desired = json.dumps(credentials, sort_keys=True)
    detail = "keys " + ", ".join(sorted(credentials))
    exists, current = _current_secret_string(secrets_client, name)
    if exists and _same_json(current, desired):
        return Action("secret", name, "present", detail)
    if dry_run:
        return Action("secret", name, "would update" if exists else "would create", detail)
    if exists:
        secrets_client.put_secret_value(SecretId=name, SecretString=desired)
        return Action("secret", name, "updated", detail)
    secrets_client.create_secret(
        Name=name,
        SecretString=desired,
        Description="CXone client credentials of the CXone Event Relay (refresh_token reads them)",
    )
    return Action("secret", name, "created", detail)


def rotate_push_secret(
    secrets_client: Any,
    name: str,
    overlap_seconds: int,
    dry_run: bool,
    generate: Callable[[int], str] = secrets.token_hex,
) -> Action:
    """A new signing key as the secret's AWSCURRENT version; Secrets Manager moves the old
    one to AWSPREVIOUS, which POST /events still accepts for `overlap_seconds`."""
    exists, current = _current_secret_string(secrets_client, name)
    if not exists or not current:
        raise SecretStateError(
            f"secret {name} holds no signing key to rotate: create it first with "
            "`python -m scripts.provision credentials`"
        )
    hours = overlap_seconds / 3600
    if dry_run:
        return Action("secret", name, "would update", "new AWSCURRENT version")
    version = secrets_client.put_secret_value(
        SecretId=name, SecretString=generate(PUSH_SECRET_BYTES), VersionStages=["AWSCURRENT"]
    )["VersionId"]
    return Action(
        "secret",
        name,
        "updated",
        f"stored a new HMAC key as version {version} (AWSCURRENT); the previous key is "
        f"AWSPREVIOUS and stays accepted for {hours:g} h: give senders the new key from "
        "Secrets Manager before then",
    )


def ensure_push_secret(
    secrets_client: Any,
    name: str,
    dry_run: bool,
    generate: Callable[[int], str] = secrets.token_hex,
) -> Action:
    """A random signing key for `POST /events`, created once; an existing value is kept."""
    exists, current = _current_secret_string(secrets_client, name)
    detail = "HMAC-SHA256 key of POST /events (64 hex characters)"
    if current:
        return Action("secret", name, "present", "kept: " + detail)
    if dry_run:
        return Action("secret", name, "would update" if exists else "would create", detail)
    value = generate(PUSH_SECRET_BYTES)
    if exists:
        secrets_client.put_secret_value(SecretId=name, SecretString=value)
        return Action("secret", name, "updated", detail)
    secrets_client.create_secret(
        Name=name,
        SecretString=value,
        Description="Signing key of the CXone Event Relay's POST /events (shared with senders)",
    )
    return Action("secret", name, "created", detail)
