"""What a provisioning step did (or would do) to one resource."""

from __future__ import annotations

from dataclasses import dataclass

CHANGED = ("created", "updated")


@dataclass(frozen=True)
class Action:
    kind: str  # "queue", "topic", "table", "bus", "rule", "target", "queue-policy", …
    name: str
    status: str  # "created" | "present" | "updated" | "would create" | "would update"
    detail: str = ""

    @property
    def changed(self) -> bool:
        return self.status in CHANGED
