"""The tests' and the local stack's AWS writes DynamoDB items atomically, as DynamoDB does.

The relay's leases, claims and replay-job counters are conditional writes of one item from
concurrent invocations; on moto's plain threaded server some of these concurrent updates
were lost (792 of 800 kept), so the suite's concurrency tests could fail by chance.
"""

from __future__ import annotations

import threading
import uuid
from typing import Any

import boto3

from tests.support.environment import REGION

WRITERS = 8
UPDATES_PER_WRITER = 100


def test_concurrent_conditional_updates_of_one_item_all_count(aws_endpoint: str) -> None:
    client: Any = boto3.client("dynamodb", region_name=REGION, endpoint_url=aws_endpoint)
    table = "atomic-" + uuid.uuid4().hex[:8]
    client.create_table(
        TableName=table,
        KeySchema=[{"AttributeName": "pk", "KeyType": "HASH"}],
        AttributeDefinitions=[{"AttributeName": "pk", "AttributeType": "S"}],
        BillingMode="PAY_PER_REQUEST",
    )
    key = {"pk": {"S": "job"}}
    client.put_item(TableName=table, Item={**key, "owner": {"S": "me"}, "progress": {"M": {}}})

    def writer(number: int) -> None:
        own: Any = boto3.client("dynamodb", region_name=REGION, endpoint_url=aws_endpoint)
        for _ in range(UPDATES_PER_WRITER):
            # The shape of a replay job's progress update: owned (conditional), a map entry of
            # its own, a counter shared with the other writers.
            own.update_item(
                TableName=table,
                Key=key,
                UpdateExpression="SET progress.#mine = :progress ADD published :one",
                ConditionExpression="#owner = :owner",
                ExpressionAttributeNames={"#mine": f"writer-{number}", "#owner": "owner"},
                ExpressionAttributeValues={
                    ":progress": {"M": {"after": {"S": "x" * 200}}},
                    ":one": {"N": "1"},
                    ":owner": {"S": "me"},
                },
                ReturnValues="ALL_NEW",
            )

    threads = [threading.Thread(target=writer, args=(n,)) for n in range(WRITERS)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()

    item = client.get_item(TableName=table, Key=key, ConsistentRead=True)["Item"]
    assert item["published"] == {"N": str(WRITERS * UPDATES_PER_WRITER)}
    assert set(item["progress"]["M"]) == {f"writer-{n}" for n in range(WRITERS)}
