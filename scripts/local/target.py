"""Which AWS the operator CLIs talk to: the local stack while `make run` is up, else AWS's chain.

`python -m scripts.replay|dlq|simulate|provision` with no target flags, in a directory whose
`.local/stack.json` exists (the local stack writes it once it is up and removes it when it
stops) and with no AWS_ENDPOINT_URL set, target that local stack: its moto endpoint, region,
stage and throwaway credentials, through the standard AWS variables of this process only, so
every boto3 client they make goes there without a code path of its own. They say so in one
line on stderr. Anything else (a flag that names a target, AWS_ENDPOINT_URL, no stack file)
leaves the standard boto3 chain alone: environment, profile, SSO, instance role.
"""

from __future__ import annotations

import json
import os
import sys
from collections.abc import MutableMapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any, TextIO

STACK_FILE = Path(".local/stack.json")
# moto accepts any credentials; these never leave this machine.
LOCAL_CREDENTIALS = {"AWS_ACCESS_KEY_ID": "local", "AWS_SECRET_ACCESS_KEY": "local"}


@dataclass(frozen=True)
class LocalStackTarget:
    stack_file: Path
    aws_endpoint_url: str
    region: str
    stage: str
    api_url: str | None
    description: dict[str, Any]  # the whole stack.json

    def environment(self) -> dict[str, str]:
        """The standard AWS variables (and the relay's stage) that point at this stack."""
        return {
            "AWS_ENDPOINT_URL": self.aws_endpoint_url,
            "AWS_REGION": self.region,
            "AWS_DEFAULT_REGION": self.region,
            "RELAY_STAGE": self.stage,
            **LOCAL_CREDENTIALS,
        }


def read_stack_file(stack_file: Path) -> LocalStackTarget | None:
    """The stack a stack.json describes; None when there is none (or it is not one)."""
    try:
        data = json.loads(stack_file.read_text())
    except (OSError, ValueError):
        return None
    if not isinstance(data, dict) or not isinstance(data.get("aws_endpoint_url"), str):
        return None
    return LocalStackTarget(
        stack_file=stack_file,
        aws_endpoint_url=data["aws_endpoint_url"],
        region=str(data.get("region") or "us-east-1"),
        stage=str(data.get("stage") or "local"),
        api_url=data.get("api_url"),
        description=data,
    )


def use_local_stack(
    tool: str,
    *,
    stack_file: Path | str | None = None,
    explicit_target: bool = False,
    environ: MutableMapping[str, str] | None = None,
    announce: TextIO | None = None,
) -> LocalStackTarget | None:
    """Point this process at the local stack when that is what the user means, and say so.

    `stack_file` is a stack named on the command line (`--stack`): always used. Otherwise the
    default `.local/stack.json` is used unless `explicit_target` (a flag named another target)
    or AWS_ENDPOINT_URL is set. Returns the stack targeted, or None (standard chain).
    """
    environ = os.environ if environ is None else environ
    if stack_file is None:
        if explicit_target or environ.get("AWS_ENDPOINT_URL"):
            return None
        target = read_stack_file(STACK_FILE)
    else:
        target = read_stack_file(Path(stack_file))
        if target is None:
            raise SystemExit(f"{stack_file} is not a local stack's stack.json (make run writes it)")
    if target is None:
        return None
    # A session token or profile of the user's real account must not ride along to moto.
    for name in ("AWS_SESSION_TOKEN", "AWS_PROFILE"):
        environ.pop(name, None)
    environ.update(target.environment())
    print(
        f"{tool}: using the local stack of {target.stack_file} ({target.aws_endpoint_url}, "
        f"stage {target.stage}); set AWS_ENDPOINT_URL or pass a target flag for another",
        file=announce or sys.stderr,
    )
    return target


def unreachable_hint(target: LocalStackTarget | None) -> str:
    """What to tell the user when the endpoint does not answer."""
    if target is None:
        return "check the endpoint, your network and your AWS configuration"
    return f"is `make run` running? ({target.stack_file} names {target.aws_endpoint_url})"
