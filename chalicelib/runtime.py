"""The process-wide runtime: settings, AWS clients and resolved ARNs, built once per cold start.

Handlers call `get_runtime()`; tests that change the environment call `reset_runtime()`.
Clients pick up `AWS_ENDPOINT_URL` themselves (moto locally, AWS when deployed).
"""

from __future__ import annotations

import threading
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Literal, cast

import boto3
from botocore.config import Config

from chalicelib.config import Settings, load_settings

if TYPE_CHECKING:
    from mypy_boto3_dynamodb import DynamoDBClient
    from mypy_boto3_events import EventBridgeClient
    from mypy_boto3_secretsmanager import SecretsManagerClient
    from mypy_boto3_sns import SNSClient
    from mypy_boto3_sqs import SQSClient

# Standard retry mode retries throttling and 5xx with backoff; a few attempts only, since the
# record itself is retried by SQS with its own backoff.
_CLIENT_CONFIG = Config(
    retries={"mode": "standard", "max_attempts": 3},
    connect_timeout=3,
    read_timeout=10,
    max_pool_connections=32,
)


# The services chalicelib calls; each client is made once per process and shared by threads.
ServiceName = Literal["sqs", "sns", "dynamodb", "events", "secretsmanager"]


@dataclass
class Runtime:
    settings: Settings
    session: boto3.Session
    account_id: str
    executor: ThreadPoolExecutor = field(repr=False)
    # Keyed by service name, so a test can put a fault-injecting client in a service's place.
    _clients: dict[str, Any] = field(default_factory=dict, repr=False)
    _lock: threading.Lock = field(default_factory=threading.Lock, repr=False)

    def client(self, name: ServiceName) -> Any:
        # Session.client is not thread-safe: build each client once, under the lock.
        with self._lock:
            if name not in self._clients:
                self._clients[name] = self.session.client(name, config=_CLIENT_CONFIG)
            return self._clients[name]

    @property
    def sqs(self) -> SQSClient:
        return cast("SQSClient", self.client("sqs"))

    @property
    def sns(self) -> SNSClient:
        return cast("SNSClient", self.client("sns"))

    @property
    def dynamodb(self) -> DynamoDBClient:
        return cast("DynamoDBClient", self.client("dynamodb"))

    @property
    def events(self) -> EventBridgeClient:
        return cast("EventBridgeClient", self.client("events"))

    @property
    def secretsmanager(self) -> SecretsManagerClient:
        return cast("SecretsManagerClient", self.client("secretsmanager"))

    def topic_arn(self, topic_name: str) -> str:
        partition = self.session.get_partition_for_region(self.settings.region)
        return f"arn:{partition}:sns:{self.settings.region}:{self.account_id}:{topic_name}"

    @property
    def consumer_topics(self) -> dict[str, str]:
        return {
            consumer: self.topic_arn(self.settings.consumer_topic_name(consumer))
            for consumer in self.settings.consumers
        }

    @property
    def quarantine_topic(self) -> str:
        return self.topic_arn(self.settings.names.quarantine_topic)


_runtime: Runtime | None = None
_runtime_lock = threading.Lock()


def build_runtime(settings: Settings | None = None) -> Runtime:
    settings = settings or load_settings()
    session = boto3.Session(region_name=settings.region)
    account_id = settings.account_id
    if account_id is None:
        # One STS call per cold start; set RELAY_ACCOUNT_ID to skip it.
        account_id = session.client("sts", config=_CLIENT_CONFIG).get_caller_identity()["Account"]
    return Runtime(
        settings=settings,
        session=session,
        account_id=account_id,
        executor=ThreadPoolExecutor(max_workers=16, thread_name_prefix="relay"),
    )


def get_runtime() -> Runtime:
    global _runtime
    with _runtime_lock:
        if _runtime is None:
            _runtime = build_runtime()
        return _runtime


def reset_runtime() -> None:
    global _runtime
    with _runtime_lock:
        if _runtime is not None:
            _runtime.executor.shutdown(wait=False)
        _runtime = None
