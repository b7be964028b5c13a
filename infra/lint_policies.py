"""parliament over every IAM policy in template.yaml (make lint).

moto never evaluates IAM conditions, so this is what checks that a policy means on AWS what the
tests assume: unknown actions, condition keys an action does not support, resources that do not
fit an action. Intrinsic functions are resolved twice: from the parameters' defaults, and with
every optional part switched on (VARIANTS), so a statement behind a condition is checked too.
The stack's own resources get stand-in ARNs.

Also run over infra/target-account.yaml (the roles of each target account), whose parameters
without a default (the Keysmith account, its function roles) resolve to empty text here.

Usage: python infra/lint_policies.py [template.yaml]   exit 1 on any finding not ignored below.
"""

import json
import re
import sys

import yaml
from parliament import analyze_policy_string

ACCOUNT, REGION, PARTITION, STACK = "123456789012", "us-east-1", "aws", "keysmith"

# Findings that are understood, each with its reason: (issue, policy owner, text in the detail).
IGNORED = [
    # parliament's own data lists iam:ResourceTag/${TagKey} for the `user` resource type that
    # CreateAccessKey / DeleteAccessKey / UpdateAccessKey act on (the Service Authorization
    # Reference does too), but its check only accepts aws:ResourceTag there: a false positive.
    ("UNKNOWN_CONDITION_FOR_ACTION", "SecretRotationFunction", "iam:ResourceTag/keysmith:rotation-secret"),
    ("UNKNOWN_CONDITION_FOR_ACTION", "ScheduledRotationFunction", "iam:ResourceTag/keysmith:rotation-secret"),
    ("UNKNOWN_CONDITION_FOR_ACTION", "RotatorRole", "iam:ResourceTag/keysmith:rotation-secret"),
    # infra/target-account.yaml's cross-account rotation role: the same statement as RotatorRole.
    ("UNKNOWN_CONDITION_FOR_ACTION", "RotationRole", "iam:ResourceTag/keysmith:rotation-secret"),
    # iam:PermissionsBoundary is typed ARN; StringEquals on the exact ARN is what AWS's own
    # examples use, and parliament rates it usable.
    ("MISMATCHED_TYPE_BUT_USABLE", "IssueCredentialsFunction", "StringEquals"),
    ("MISMATCHED_TYPE_BUT_USABLE", "ScheduledRotationFunction", "StringEquals"),
    # infra/target-account.yaml's revoker role: the same RevocationTargetBoundaryArn condition.
    ("MISMATCHED_TYPE_BUT_USABLE", "RevokerRole", "StringEquals"),
    # In a key policy "Resource": "*" means the key itself; the statement is AWS's default key
    # policy (the account, through IAM policies), which is what lets IAM grant any use of it.
    ("RESOURCE_STAR", "KeysmithKey", ""),
    # The audit signing key's policy (SPEC 13): "*" is the key itself; who may do what is in the
    # Principal of each statement (the account administers and verifies, the sealer role signs).
    ("RESOURCE_STAR", "AuditSigningKey", ""),
]


def ignored(finding, owner):
    detail = f"{finding.detail}"
    return any(
        finding.issue == issue and owner == who and text in detail
        for issue, who, text in IGNORED
    )


# Parameter values on top of the defaults; each set is one pass over the template.
VARIANTS = [
    {},
    {
        "KmsKey": "create",
        "KeyAgeDryRun": "false",
        "ExampleRotatedUser": "example",
        "AlarmEmail": "ops@example.com",
        "LeaseBoundaryArns": "arn:aws:iam::123456789012:policy/extra-boundary",
        "RevocationTargetBoundaryArn": "arn:aws:iam::123456789012:policy/revocable",
        "RevokerRoleName": "keysmith/keysmith-revoker",
        # infra/target-account.yaml creates its rotation role only with a RotatedUserPath.
        "RotatedUserPath": "/service-accounts/",
        # SPEC 13: checkpoints archived in an existing bucket (another account's) instead.
        "AuditArchiveBucketName": "keysmith-audit-archive-210987654321",
        # SPEC 15: the unused-key limit and the canary's statements.
        "UnusedKeyDays": "30",
        "CanaryProfile": "keysmith-canary",
    },
    {"KmsKey": "arn:aws:kms:us-east-1:123456789012:key/1234abcd-12ab-34cd-56ef-1234567890ab"},
]

ARN_OF_TYPE = {
    "AWS::DynamoDB::Table": "arn:aws:dynamodb:{r}:{a}:table/{n}",
    "AWS::Serverless::Function": "arn:aws:lambda:{r}:{a}:function:{s}-{n}",
    "AWS::SQS::Queue": "arn:aws:sqs:{r}:{a}:{s}-{n}",
    "AWS::SNS::Topic": "arn:aws:sns:{r}:{a}:{s}-{n}",
    "AWS::IAM::ManagedPolicy": "arn:aws:iam::{a}:policy/keysmith/{n}",
    "AWS::Logs::LogGroup": "arn:aws:logs:{r}:{a}:log-group:{n}",
    "AWS::SecretsManager::Secret": "arn:aws:secretsmanager:{r}:{a}:secret:keysmith/{n}",
    "AWS::KMS::Key": "arn:aws:kms:{r}:{a}:key/00000000-0000-0000-0000-{n:0>12.12}",
}

# Resources whose Ref is their ARN (the others' Ref is a name or id).
REF_IS_ARN = ("AWS::IAM::ManagedPolicy", "AWS::SNS::Topic")


NO_VALUE = object()


class Tag:
    def __init__(self, tag, value):
        self.tag, self.value = tag, value


def construct(loader, suffix, node):
    if isinstance(node, yaml.ScalarNode):
        value = loader.construct_scalar(node)
    elif isinstance(node, yaml.SequenceNode):
        value = loader.construct_sequence(node, deep=True)
    else:
        value = loader.construct_mapping(node, deep=True)
    return Tag(suffix, value)


yaml.SafeLoader.add_multi_constructor("!", construct)


class Resolver:
    def __init__(self, template, overrides=None, account=ACCOUNT):
        self.t = template
        self.account = account
        self.params = {
            k: v.get("Default", "") for k, v in (template.get("Parameters") or {}).items()
        }
        self.params.update(overrides or {})
        self.resources = template.get("Resources") or {}
        self.conditions = template.get("Conditions") or {}

    def ref(self, name):
        pseudo = {
            "AWS::AccountId": self.account,
            "AWS::Region": REGION,
            "AWS::Partition": PARTITION,
            "AWS::StackName": STACK,
        }
        if name in pseudo:
            return pseudo[name]
        if name == "AWS::NoValue":
            return NO_VALUE
        if name in self.params:
            v = self.params[name]
            return v.split(",") if self.t["Parameters"][name]["Type"] == "CommaDelimitedList" else str(v)
        res = self.resource(name)
        return self.arn(name, res) if res["Type"] in REF_IS_ARN else f"{STACK}-{name}"

    def resource(self, name):
        # SAM's implicit role of a function (<function>Role), when the template refers to it.
        if name not in self.resources and name.endswith("Role"):
            if self.resources.get(name[: -len("Role")], {}).get("Type") == "AWS::Serverless::Function":
                return {"Type": "AWS::IAM::Role"}
        return self.resources[name]

    def arn(self, name, res):
        props = res.get("Properties") or {}
        if res["Type"] == "AWS::IAM::Role":
            # A role's path is part of its ARN, and policies match roles by path.
            path = self.resolve(props.get("Path", "/"))
            role = self.resolve(props["RoleName"]) if "RoleName" in props else f"{STACK}-{name}"
            return f"arn:aws:iam::{self.account}:role{path}{role}"
        if res["Type"] == "AWS::IAM::ManagedPolicy" and "ManagedPolicyName" in props:
            path = props.get("Path", "/")
            return f"arn:aws:iam::{self.account}:policy{path}{self.resolve(props['ManagedPolicyName'])}"
        pattern = ARN_OF_TYPE.get(res["Type"], "arn:aws:unknown:{r}:{a}:{n}")
        return pattern.format(r=REGION, a=self.account, s=STACK, n=name)

    def getatt(self, target):
        name, attr = target.split(".", 1) if isinstance(target, str) else target
        res = self.resource(name)
        if attr == "Arn":
            return self.arn(name, res)
        return f"{STACK}-{name}-{attr}"

    def condition(self, name):
        return bool(self.resolve(self.conditions[name]))

    def resolve(self, v):
        if isinstance(v, list):
            return [x for x in (self.resolve(x) for x in v) if x is not NO_VALUE]
        if isinstance(v, dict):
            return {k: x for k, x in ((k, self.resolve(x)) for k, x in v.items()) if x is not NO_VALUE}
        if not isinstance(v, Tag):
            return v
        tag, value = v.tag, v.value
        if tag == "Ref":
            return self.ref(value)
        if tag == "GetAtt":
            return self.getatt(value)
        if tag == "Sub":
            text, extra = (value, {}) if isinstance(value, str) else (value[0], self.resolve(value[1]))

            def sub(m):
                key = m.group(1)
                if key in extra:
                    return str(extra[key])
                if "." in key:
                    return self.getatt(key)
                r = self.ref(key)
                return ",".join(r) if isinstance(r, list) else r

            return re.sub(r"\$\{([^}!]+)\}", sub, text)
        if tag == "If":
            cond, yes, no = value
            return self.resolve(yes if self.condition(cond) else no)
        if tag == "Split":
            sep, text = value
            return self.resolve(text).split(sep)
        if tag == "Join":
            sep, items = value
            return sep.join(str(x) for x in self.resolve(items))
        if tag == "Equals":
            a, b = self.resolve(value)
            return str(a) == str(b)
        if tag == "Not":
            return not self.resolve(value[0])
        if tag == "And":
            return all(self.resolve(value))
        if tag == "Or":
            return any(self.resolve(value))
        if tag == "Condition":
            return self.condition(value)
        raise ValueError(f"unsupported intrinsic !{tag}")


def policies(template, overrides=None, account=ACCOUNT):
    """(owner, document) for every policy document of the resources the parameters create: IAM
    policies, key policies and bucket policies."""
    r = Resolver(template, overrides, account)
    for name, res in (template.get("Resources") or {}).items():
        if "Condition" in res and not r.condition(res["Condition"]):
            continue
        props = res.get("Properties") or {}
        if res["Type"] == "AWS::Serverless::Function":
            for p in props.get("Policies") or []:
                if isinstance(p, dict) and "Statement" in p:
                    yield name, r.resolve(p)
        elif res["Type"] in ("AWS::IAM::ManagedPolicy", "AWS::IAM::Policy"):
            yield name, r.resolve(props["PolicyDocument"])
        elif res["Type"] == "AWS::IAM::Role":
            for p in props.get("Policies") or []:
                yield name, r.resolve(p["PolicyDocument"])
        elif res["Type"] == "AWS::KMS::Key":
            yield name, r.resolve(props["KeyPolicy"])
        elif res["Type"] == "AWS::S3::BucketPolicy":
            yield name, r.resolve(props["PolicyDocument"])


def main(path):
    with open(path) as f:
        template = yaml.safe_load(f)
    findings, skipped = {}, 0
    count = 0
    for overrides in VARIANTS:
        for owner, doc in policies(template, overrides):
            count += 1
            for finding in analyze_policy_string(json.dumps(doc)).findings:
                if ignored(finding, owner):
                    skipped += 1
                    continue
                # The same finding in several passes is reported once.
                findings.setdefault(f"{owner}: {finding.issue} {finding.detail} {finding.location}", overrides)
    for f, overrides in findings.items():
        print(f"{f} (parameters: {overrides or 'defaults'})")
    print(
        f"parliament: {count} policies in {len(VARIANTS)} parameter sets, {len(findings)} findings, "
        f"{skipped} ignored (see IGNORED)"
    )
    return 1 if findings else 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1] if len(sys.argv) > 1 else "template.yaml"))
