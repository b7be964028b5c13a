#!/usr/bin/env python3
"""Keysmith's local AWS stack: moto in server mode plus the DynamoDB tables of template.yaml.

    local_stack.py tables --endpoint URL   create StateTable and AuditTable in a running emulator
    local_stack.py audit --endpoint URL    create the audit signing key and checkpoint archive
                                           (SPEC 13) in a running emulator; print the functions'
                                           KEYSMITH_AUDIT_SIGNING_KEY / _ARCHIVE_BUCKET as JSON
    local_stack.py up [--port 0]           start moto on 127.0.0.1, create the tables, the key and
                                           the archive, print the environment for the functions,
                                           run until Ctrl-C

Run it with the project's venv (.venv/bin/python): it needs boto3 and PyYAML, and `up` starts the
venv's moto_server. The tables come from template.yaml's definitions, never from a second copy; so
do the signing key's KeySpec / KeyUsage and the archive's Object Lock mode, public access block
and object ownership (its retention is a stack parameter: locally --retention-days, default 1).
"""

import argparse
import json
import os
import re
import signal
import subprocess
import sys
import threading
from pathlib import Path

import boto3
import yaml
from botocore.exceptions import BotoCoreError, ClientError

REPO_ROOT = Path(__file__).resolve().parent.parent
TABLES = {"StateTable": "state_table", "AuditTable": "audit_table"}  # resource -> option
CREATE_TABLE_KEYS = (  # Properties that CloudFormation and CreateTable spell the same way
    "KeySchema",
    "AttributeDefinitions",
    "BillingMode",
    "GlobalSecondaryIndexes",
    "LocalSecondaryIndexes",
    "ProvisionedThroughput",
)
CFN_ONLY_INDEX_KEYS = ("ContributorInsightsSpecification",)
# SPEC 13: the audit signing key and the checkpoint archive, as template.yaml defines them.
SIGNING_KEY, ARCHIVE_BUCKET = "AuditSigningKey", "AuditArchiveBucket"
SIGNING_KEY_ALIAS = "alias/keysmith-audit-signing"  # makes `audit` idempotent: one key per emulator
MOTO_START_SECONDS = 30
RUNNING_ON = re.compile(r"Running on (http://127\.0\.0\.1:\d+)")


class StackError(Exception):
    pass


class CfnLoader(yaml.SafeLoader):
    """A YAML loader that reads CloudFormation short tags as their long-form dicts."""


def _add_short_tag(tag):
    key = "Ref" if tag == "Ref" else "Condition" if tag == "Condition" else f"Fn::{tag}"

    def construct(loader, node):
        if isinstance(node, yaml.ScalarNode):
            value = loader.construct_scalar(node)
            if tag == "GetAtt":  # !GetAtt Resource.Attribute
                value = value.split(".", 1)
        elif isinstance(node, yaml.SequenceNode):
            value = loader.construct_sequence(node, deep=True)
        else:
            value = loader.construct_mapping(node, deep=True)
        return {key: value}

    CfnLoader.add_constructor(f"!{tag}", construct)


for _tag in ("Ref", "Sub", "GetAtt", "If", "Equals", "Select", "Join", "Split", "FindInMap",
             "Not", "And", "Or", "Condition", "Base64", "Cidr", "GetAZs", "ImportValue"):
    _add_short_tag(_tag)


def load_resource_properties(template_path, names, resource_type):
    """Return {resource name: Properties} for the resources `names`, each of `resource_type`."""
    try:
        with open(template_path, encoding="utf-8") as f:
            template = yaml.load(f, Loader=CfnLoader)  # a SafeLoader with the CFN tags
    except (OSError, yaml.YAMLError) as e:
        raise StackError(f"cannot read {template_path}: {e}") from e
    resources = (template or {}).get("Resources") or {}
    found = {}
    for name in names:
        resource = resources.get(name)
        if not resource or resource.get("Type") != resource_type:
            raise StackError(f"{template_path} has no {resource_type} resource named {name}")
        found[name] = resource.get("Properties") or {}
    return found


def load_table_properties(template_path):
    """Return {resource name: Properties} for the tables in TABLES."""
    return load_resource_properties(template_path, TABLES, "AWS::DynamoDB::Table")


def _plain(resource, properties, key):
    """properties[key], which must be plain data (no intrinsic function) for the local stack."""
    if key not in properties:
        raise StackError(f"{resource} has no {key}")
    value = properties[key]
    intrinsic = _find_intrinsic(value)
    if intrinsic:
        raise StackError(f"{resource}'s {key} uses {intrinsic}, which the local stack cannot resolve: "
                         "keep it plain data")
    return value


def create_audit_anchor(endpoint, region, bucket, retention_days, template_path):
    """SPEC 13: the checkpoint signing key (KMS) and the Object Lock archive (S3), as the template
    defines them, with a local retention; leave existing ones alone. Returns the functions'
    environment: {"KEYSMITH_AUDIT_SIGNING_KEY": key ARN, "KEYSMITH_AUDIT_ARCHIVE_BUCKET": name}."""
    os.environ.setdefault("AWS_ACCESS_KEY_ID", "test")
    os.environ.setdefault("AWS_SECRET_ACCESS_KEY", "test")
    key_props = load_resource_properties(template_path, [SIGNING_KEY], "AWS::KMS::Key")[SIGNING_KEY]
    bucket_props = load_resource_properties(
        template_path, [ARCHIVE_BUCKET], "AWS::S3::Bucket")[ARCHIVE_BUCKET]
    # The mode is plain data; the days are the AuditRetentionDays parameter (here retention_days).
    lock = bucket_props.get("ObjectLockConfiguration") or {}
    mode = ((lock.get("Rule") or {}).get("DefaultRetention") or {}).get("Mode")
    if not isinstance(mode, str):
        raise StackError(f"{ARCHIVE_BUCKET} has no plain ObjectLockConfiguration.Rule.DefaultRetention.Mode")

    kms = boto3.client("kms", endpoint_url=endpoint, region_name=region)
    try:
        key_arn = kms.describe_key(KeyId=SIGNING_KEY_ALIAS)["KeyMetadata"]["Arn"]
        print(f"signing key {key_arn} exists ({SIGNING_KEY_ALIAS})", file=sys.stderr)
    except ClientError as e:
        if e.response["Error"]["Code"] != "NotFoundException":
            raise
        key_arn = kms.create_key(
            Description="Keysmith (local) - signs the audit trail's checkpoints",
            KeySpec=_plain(SIGNING_KEY, key_props, "KeySpec"),
            KeyUsage=_plain(SIGNING_KEY, key_props, "KeyUsage"),
        )["KeyMetadata"]["Arn"]
        kms.create_alias(AliasName=SIGNING_KEY_ALIAS, TargetKeyId=key_arn)
        print(f"created signing key {key_arn} ({SIGNING_KEY})", file=sys.stderr)

    s3 = boto3.client("s3", endpoint_url=endpoint, region_name=region)
    try:  # (CreateBucket in us-east-1 answers 200 for a bucket one already owns)
        s3.head_bucket(Bucket=bucket)
        created = False
    except ClientError as e:
        if e.response["Error"]["Code"] not in ("404", "NoSuchBucket", "NotFound"):
            raise
        created = True
    if created:
        create = {"Bucket": bucket, "ObjectLockEnabledForBucket": True}  # versioning comes with it
        if region != "us-east-1":
            create["CreateBucketConfiguration"] = {"LocationConstraint": region}
        s3.create_bucket(**create)
        s3.put_object_lock_configuration(Bucket=bucket, ObjectLockConfiguration={
            "ObjectLockEnabled": "Enabled",
            "Rule": {"DefaultRetention": {"Mode": mode, "Days": retention_days}},
        })
        s3.put_public_access_block(
            Bucket=bucket,
            PublicAccessBlockConfiguration=_plain(
                ARCHIVE_BUCKET, bucket_props, "PublicAccessBlockConfiguration"))
        s3.put_bucket_ownership_controls(
            Bucket=bucket,
            OwnershipControls=_plain(ARCHIVE_BUCKET, bucket_props, "OwnershipControls"))
    print(f"created archive bucket {bucket} ({ARCHIVE_BUCKET}, Object Lock {mode}, retention "
          f"{retention_days} d)" if created else f"archive bucket {bucket} exists",
          file=sys.stderr)
    return {"KEYSMITH_AUDIT_SIGNING_KEY": key_arn, "KEYSMITH_AUDIT_ARCHIVE_BUCKET": bucket}


def create_table_request(resource, properties):
    """Translate a table's CloudFormation Properties into CreateTable arguments."""
    request = {k: properties[k] for k in CREATE_TABLE_KEYS if k in properties}
    for index in request.get("GlobalSecondaryIndexes", []):
        for key in CFN_ONLY_INDEX_KEYS:
            index.pop(key, None)
    intrinsic = _find_intrinsic(request)
    if intrinsic:
        raise StackError(f"{resource} uses {intrinsic}, which the local stack cannot resolve: "
                         "keep the table definitions plain data")
    return request


def _find_intrinsic(value):
    """The first intrinsic function (Ref, Condition, Fn::*) found in value, or None."""
    if isinstance(value, dict):
        for key in value:
            if key in ("Ref", "Condition") or key.startswith("Fn::"):
                return key
        value = list(value.values())
    if isinstance(value, list):
        return next(filter(None, map(_find_intrinsic, value)), None)
    return None


def create_tables(endpoint, region, names, template_path):
    """Create each table of the template under names[resource]; leave existing ones alone."""
    os.environ.setdefault("AWS_ACCESS_KEY_ID", "test")
    os.environ.setdefault("AWS_SECRET_ACCESS_KEY", "test")
    if region not in boto3.session.Session().get_available_regions("dynamodb"):
        raise StackError(f"unknown region {region!r}: moto answers a made-up region with HTTP 500")
    dynamodb = boto3.client("dynamodb", endpoint_url=endpoint, region_name=region)
    for resource, properties in load_table_properties(template_path).items():
        table = names[resource]
        request = create_table_request(resource, properties)
        try:
            dynamodb.create_table(TableName=table, **request)
            created = True
        except ClientError as e:
            if e.response["Error"]["Code"] != "ResourceInUseException":
                raise
            created = False
        dynamodb.get_waiter("table_exists").wait(  # until ACTIVE
            TableName=table, WaiterConfig={"Delay": 1, "MaxAttempts": 60})
        ttl = properties.get("TimeToLiveSpecification") or {}
        if created and str(ttl.get("Enabled")).lower() == "true":
            dynamodb.update_time_to_live(
                TableName=table,
                TimeToLiveSpecification={"Enabled": True, "AttributeName": ttl["AttributeName"]})
        print(f"created table {table} ({resource})" if created else f"table {table} exists")


def start_moto(port):
    """Start the venv's moto_server on 127.0.0.1; return (process, endpoint URL)."""
    moto_server = Path(sys.executable).parent / "moto_server"
    if not moto_server.exists():
        raise StackError(f"{moto_server} not found: run `make venv` and use .venv/bin/python")
    # AWS managed policies (arn:aws:iam::aws:policy/...) exist in every account; moto loads them
    # only when asked (the README's ReadOnlyAccess examples need them).
    env = dict(os.environ, MOTO_IAM_LOAD_MANAGED_POLICIES="true")
    proc = subprocess.Popen([str(moto_server), "-H", "127.0.0.1", "-p", str(port)],
                            stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL,
                            stderr=subprocess.PIPE, text=True, env=env)
    timer = threading.Timer(MOTO_START_SECONDS, proc.kill)  # bounds the wait for the banner
    timer.start()
    seen = []
    for line in proc.stderr:
        seen.append(line)
        match = RUNNING_ON.search(line)
        if match:
            timer.cancel()
            # moto logs every request on stderr: pass it on, so the pipe never fills up.
            threading.Thread(target=forward, args=(proc.stderr,), daemon=True).start()
            return proc, match.group(1)
    timer.cancel()
    stop_moto(proc)
    raise StackError("moto_server did not start:\n" + "".join(seen[-20:]))


def forward(stream):
    for line in stream:
        sys.stderr.write(line)


def stop_moto(proc):
    if proc.poll() is None:
        proc.terminate()
        try:
            proc.wait(timeout=5)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()


def up(args):
    # Whatever credentials the shell has, the emulator gets (and the printout shows) dummy ones.
    os.environ["AWS_ACCESS_KEY_ID"] = "test"
    os.environ["AWS_SECRET_ACCESS_KEY"] = "test"
    os.environ.pop("AWS_SESSION_TOKEN", None)
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(0))
    proc, endpoint = start_moto(args.port)
    try:
        create_tables(endpoint, args.region, table_names(args), args.template)
        audit_env = create_audit_anchor(endpoint, args.region, args.archive_bucket,
                                        args.retention_days, args.template)
        print(f"""
# moto is running at {endpoint}; paste these into another shell:
export AWS_ENDPOINT_URL={endpoint}
export AWS_REGION={args.region}
export AWS_DEFAULT_REGION={args.region}
export AWS_ACCESS_KEY_ID=test
export AWS_SECRET_ACCESS_KEY=test
export AWS_EC2_METADATA_DISABLED=true
export KEYSMITH_STATE_TABLE={args.state_table}
export KEYSMITH_AUDIT_TABLE={args.audit_table}
export KEYSMITH_ADMINS=arn:aws:iam::123456789012:user/admin
export KEYSMITH_LEASE_BOUNDARY_ARNS=arn:aws:iam::123456789012:policy/keysmith/lease-boundary
export KEYSMITH_AUDIT_SIGNING_KEY={audit_env["KEYSMITH_AUDIT_SIGNING_KEY"]}
export KEYSMITH_AUDIT_ARCHIVE_BUCKET={audit_env["KEYSMITH_AUDIT_ARCHIVE_BUCKET"]}
# Ctrl-C stops moto.""", flush=True)
        code = proc.wait()
        raise StackError(f"moto_server exited with status {code}")
    except KeyboardInterrupt:
        print("\nstopping moto", file=sys.stderr)
    finally:
        stop_moto(proc)


def table_names(args):
    return {resource: getattr(args, option) for resource, option in TABLES.items()}


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    common = argparse.ArgumentParser(add_help=False)
    common.add_argument("--region", default="us-east-1")
    common.add_argument("--state-table", default="keysmith-state")
    common.add_argument("--audit-table", default="keysmith-audit")
    common.add_argument("--template", type=Path, default=REPO_ROOT / "template.yaml",
                        help="SAM template to read the tables from (default: the repo's)")
    anchor = argparse.ArgumentParser(add_help=False)
    anchor.add_argument("--archive-bucket", default="keysmith-audit-archive",
                        help="name of the checkpoint archive bucket (SPEC 13)")
    anchor.add_argument("--retention-days", type=int, default=1,
                        help="Object Lock retention of the archive (the stack's AuditRetentionDays)")
    commands = parser.add_subparsers(dest="command", required=True)
    tables = commands.add_parser("tables", parents=[common],
                                 help="create the tables in a running emulator")
    tables.add_argument("--endpoint", required=True, help="e.g. http://127.0.0.1:5000")
    audit = commands.add_parser("audit", parents=[common, anchor],
                                help="create the audit signing key and archive in a running "
                                     "emulator; print their environment variables as JSON")
    audit.add_argument("--endpoint", required=True, help="e.g. http://127.0.0.1:5000")
    start = commands.add_parser("up", parents=[common, anchor],
                                help="start moto, create the tables, the signing key and the "
                                     "archive, run until Ctrl-C")
    start.add_argument("--port", type=int, default=0, help="0 picks a free port")
    args = parser.parse_args()
    try:
        if args.command == "tables":
            create_tables(args.endpoint, args.region, table_names(args), args.template)
        elif args.command == "audit":
            env = create_audit_anchor(args.endpoint, args.region, args.archive_bucket,
                                      args.retention_days, args.template)
            print(json.dumps(env))
        else:
            up(args)
    except (StackError, BotoCoreError, ClientError) as e:
        sys.exit(f"local_stack: {e}")


if __name__ == "__main__":
    main()
