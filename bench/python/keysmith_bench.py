"""The jobs of Keysmith's three functions the way most teams would write them: Python, boto3,
clients built at import, run under awslambdaric. `make bench` measures them beside the Rust
binaries, on the same events against the same local AWS. Same AWS calls per event, no extras."""
import datetime
import json
import os
import uuid

import boto3

STATE = os.environ["KEYSMITH_STATE_TABLE"]
AUDIT = os.environ["KEYSMITH_AUDIT_TABLE"]
ddb = boto3.client("dynamodb")
sts = boto3.client("sts")
secrets = boto3.client("secretsmanager")


def _now():
    return datetime.datetime.now(datetime.timezone.utc)


def issue(event, context):
    """POST /v1/profiles/{name}/credentials for an assumed_role profile."""
    caller = event["requestContext"]["authorizer"]["iam"]["userArn"]
    name = event["rawPath"].split("/")[3]
    body = json.loads(event.get("body") or "{}")
    item = ddb.get_item(TableName=STATE, Key={"pk": {"S": "profile"}, "sk": {"S": name}},
                        ConsistentRead=True).get("Item")
    if item is None:
        return {"statusCode": 404, "body": json.dumps({"error": {"code": "not_found"}})}
    profile = json.loads(item["doc"]["S"])
    duration = int(body.get("duration_seconds", profile.get("default_duration_seconds", 3600)))
    creds = sts.assume_role(RoleArn=profile["role_arn"], RoleSessionName=caller.rsplit("/", 1)[-1],
                            DurationSeconds=duration)["Credentials"]
    now = _now()
    lease_id = str(uuid.uuid4())
    ddb.put_item(TableName=AUDIT, Item={
        "day": {"S": now.strftime("%Y-%m-%d")},
        "sk": {"S": now.strftime("%Y-%m-%dT%H:%M:%S.%fZ") + "#" + str(uuid.uuid4())},
        "time": {"S": now.isoformat()}, "principal": {"S": caller}, "profile": {"S": name},
        "event": {"S": "AWS STS Temporary"}, "message": {"S": "AWS STS Temporary Key Generated."},
        "access_key_id": {"S": creds["AccessKeyId"]}, "lease_id": {"S": lease_id},
        "duration_seconds": {"N": str(duration)}, "outcome": {"S": "success"},
    })
    return {"statusCode": 200, "headers": {"content-type": "application/json"}, "body": json.dumps({
        "access_key_id": creds["AccessKeyId"], "secret_access_key": creds["SecretAccessKey"],
        "session_token": creds["SessionToken"],
        "expiration": creds["Expiration"].strftime("%Y-%m-%dT%H:%M:%SZ"),
        "lease_id": lease_id, "lease_duration": duration, "profile": name,
        "credential_type": "assumed_role"})}


def scheduled(event, context):
    """The hourly run when nothing is due: the due-policy and expired-lease queries."""
    now = _now().strftime("%Y-%m-%dT%H:%M:%S.%fZ")
    read = 0
    for pk in ("rotation", "lease"):
        out = ddb.query(TableName=STATE, IndexName="due",
                        KeyConditionExpression="due_pk = :pk AND due_at <= :now",
                        ExpressionAttributeValues={":pk": {"S": pk}, ":now": {"S": now}})
        read += out["Count"]
    return {"policies_read": read, "rotated": []}


def secret_rotation(event, context):
    """The rotation hook's guards and setSecret (a no-op once guarded)."""
    meta = secrets.describe_secret(SecretId=event["SecretId"])
    if not meta.get("RotationEnabled"):
        raise ValueError("rotation is not enabled")
    versions = meta["VersionIdsToStages"]
    token = event["ClientRequestToken"]
    if token not in versions:
        raise ValueError("token is not a version of the secret")
    if "AWSCURRENT" in versions[token]:
        return None
    if "AWSPENDING" not in versions[token]:
        raise ValueError("version is not AWSPENDING")
    return None
