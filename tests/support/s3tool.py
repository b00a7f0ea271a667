"""An S3 / DynamoDB client independent of stateplug, for the integration tests (boto3).

Usage: s3tool.py ENDPOINT COMMAND [ARGS...]; prints one JSON value on stdout. A request
refused by the server prints {"error": {"Code", "Message", "HTTPStatusCode"}} and exits 3.

s3tool.py ENDPOINT --serve: one request per stdin line, {"args": [COMMAND, ARGS...],
"stdin_b64": "..."}, one answer per stdout line: {"ok": VALUE}, {"error": {...}} or
{"failed": "traceback"}. tests/common/moto.rs keeps one such process per moto server (python
start-up and boto3 clients cost ~0.5 s per call otherwise), with the venv's python and a
clean environment (credentials `test`, region us-east-1).

Commands:
  create-bucket BUCKET
  create-lock-table TABLE                  hash key LockID (S), PAY_PER_REQUEST
  head-object BUCKET KEY                   the HeadObject answer, dates as ISO 8601
  get-object BUCKET KEY                    {"body_b64": ...}
  put-object BUCKET KEY                    body from stdin (stdin_b64); {"ETag", "VersionId"?}
  list-keys BUCKET PREFIX                  every key under PREFIX, following pagination
  get-item TABLE LOCK_ID                   the item as plain JSON, or null
  put-item TABLE ITEM_JSON                 ITEM_JSON: {"LockID": "...", "Info": "..."}
"""

import base64
import datetime
import decimal
import json
import sys
import traceback

import boto3
import botocore.config
import botocore.exceptions
from boto3.dynamodb.types import TypeDeserializer, TypeSerializer


def plain(value):
    """JSON-serializable form of a boto3 answer."""
    if isinstance(value, dict):
        return {k: plain(v) for k, v in value.items() if k not in ("ResponseMetadata", "Body")}
    if isinstance(value, (list, tuple, set)):
        return [plain(v) for v in value]
    if isinstance(value, datetime.datetime):
        return value.isoformat()
    if isinstance(value, decimal.Decimal):
        return int(value) if value == value.to_integral_value() else float(value)
    if isinstance(value, (bytes, bytearray)):
        return base64.b64encode(value).decode()
    return value


class Clients:
    """boto3 clients for one endpoint, made on first use."""

    def __init__(self, endpoint):
        self.endpoint = endpoint
        self.made = {}
        self.config = botocore.config.Config(
            region_name="us-east-1",
            s3={"addressing_style": "path"},
            retries={"max_attempts": 2, "mode": "standard"},
            connect_timeout=5,
            read_timeout=30,
        )

    def client(self, service):
        if service not in self.made:
            self.made[service] = boto3.client(
                service, endpoint_url=self.endpoint, config=self.config
            )
        return self.made[service]

    def s3(self):
        return self.client("s3")

    def dynamodb(self):
        return self.client("dynamodb")


def run(clients, command, args, stdin):
    s3, dynamodb = clients.s3, clients.dynamodb  # a client is made on its first call
    if command == "create-bucket":
        return plain(s3().create_bucket(Bucket=args[0]))
    if command == "create-lock-table":
        dynamodb().create_table(
            TableName=args[0],
            KeySchema=[{"AttributeName": "LockID", "KeyType": "HASH"}],
            AttributeDefinitions=[{"AttributeName": "LockID", "AttributeType": "S"}],
            BillingMode="PAY_PER_REQUEST",
        )
        dynamodb().get_waiter("table_exists").wait(TableName=args[0])
        return {"TableName": args[0]}
    if command == "head-object":
        return plain(s3().head_object(Bucket=args[0], Key=args[1]))
    if command == "get-object":
        answer = s3().get_object(Bucket=args[0], Key=args[1])
        return {"body_b64": base64.b64encode(answer["Body"].read()).decode()}
    if command == "put-object":
        return plain(s3().put_object(Bucket=args[0], Key=args[1], Body=stdin))
    if command == "list-keys":
        pages = s3().get_paginator("list_objects_v2").paginate(Bucket=args[0], Prefix=args[1])
        return [o["Key"] for page in pages for o in page.get("Contents", [])]
    if command == "get-item":
        answer = dynamodb().get_item(
            TableName=args[0], Key={"LockID": {"S": args[1]}}, ConsistentRead=True
        )
        if "Item" not in answer:
            return None
        return plain({k: TypeDeserializer().deserialize(v) for k, v in answer["Item"].items()})
    if command == "put-item":
        item = {k: TypeSerializer().serialize(v) for k, v in json.loads(args[1]).items()}
        return plain(dynamodb().put_item(TableName=args[0], Item=item))
    raise ValueError(f"unknown command {command!r}")


def refused(e):
    error = dict(e.response.get("Error", {}))
    error["HTTPStatusCode"] = e.response.get("ResponseMetadata", {}).get("HTTPStatusCode")
    return plain(error)


def serve(clients):
    for line in sys.stdin:
        request = json.loads(line)
        stdin = base64.b64decode(request.get("stdin_b64", ""))
        try:
            answer = {"ok": run(clients, request["args"][0], request["args"][1:], stdin)}
        except botocore.exceptions.ClientError as e:
            answer = {"error": refused(e)}
        except Exception:
            answer = {"failed": traceback.format_exc()}
        sys.stdout.write(json.dumps(answer) + "\n")
        sys.stdout.flush()


if __name__ == "__main__":
    clients = Clients(sys.argv[1])
    if sys.argv[2] == "--serve":
        serve(clients)
        sys.exit(0)
    try:
        stdin = sys.stdin.buffer.read() if sys.argv[2] == "put-object" else b""
        print(json.dumps(run(clients, sys.argv[2], sys.argv[3:], stdin)))
    except botocore.exceptions.ClientError as e:
        print(json.dumps({"error": refused(e)}))
        sys.exit(3)
