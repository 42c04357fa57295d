import json

from chalice.test import Client

from tests.support.helpers import cxone_event, sqs_lambda_event


def test_batch_flows(provisioned):
    import app as app_module

    rt = provisioned
    queue_arn = f"arn:aws:sqs:us-east-1:123456789012:{rt.settings.names.ingest_queue}"
    events = [cxone_event("int-1", s, n) for n, s in enumerate(["Queued", "Offered", "Connected"])]
    bodies = [json.dumps(e) for e in events] + [json.dumps(events[0]), "not json"]
    with Client(app_module.app, stage_name="local") as client:
        result = client.lambda_.invoke("ingest", sqs_lambda_event(bodies, queue_arn))
    assert result.payload == {"batchItemFailures": []}
