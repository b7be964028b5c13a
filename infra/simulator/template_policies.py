"""Every IAM policy of template.yaml as SAM builds it, for the simulator (make lint, SPEC 18).

Resolves the template with infra/lint_policies.py's resolver (stand-in ARNs for the stack's own
resources) once per parameter set of parameters.json, and prints JSON:
  {"variants": {"<name>": {"values": {placeholder: text}, "policies": {owner: [document]},
                           "trust": {role: document}}}}
`values` are what the expectation tables may write as {{Name}}: every parameter, the pseudo
parameters (Account, Region, Partition, StackName), {{Ref:<resource>}} and {{Arn:<resource>}}
(a function's implicit role too: {{Arn:IssueCredentialsFunctionRole}}), and the parameter set's
own `samples`.

A parameter set may also deploy infra/target-account.yaml (the revoker and rotation roles of
another account): "target_account": {"template": <path from the repository root>, "account":
<12 digits>, "parameters": {...}}. Its parameters naming the Keysmith deployment
(KeysmithAccountId, the three function role ARNs, SecretsPrefix) come from this parameter set's
resolution of template.yaml, so both templates are evaluated as one deployment. Its roles are the
owners "target-account/<resource>" (policy refs "template:target-account/RevokerRole",
"trust:target-account/RevokerRole"); its values are {{Target:Account}}, {{Target:<parameter>}},
{{Target:Arn:<resource>}}.

Usage: python infra/simulator/template_policies.py template.yaml infra/simulator/parameters.json
"""

import json
import os
import sys

import yaml

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), ".."))
import lint_policies  # noqa: E402  (the resolver: one copy of the intrinsic-function rules)
from lint_policies import ACCOUNT, PARTITION, REGION, STACK, Resolver  # noqa: E402

TARGET = "target-account/"


def values(template, resolver, samples):
    out = {"Account": ACCOUNT, "Region": REGION, "Partition": PARTITION, "StackName": STACK}
    for name in template.get("Parameters") or {}:
        v = resolver.ref(name)
        out[name] = ",".join(v) if isinstance(v, list) else v
    for name, res in (template.get("Resources") or {}).items():
        if "Condition" in res and not resolver.condition(res["Condition"]):
            continue
        out[f"Ref:{name}"] = resolver.ref(name)
        out[f"Arn:{name}"] = resolver.arn(name, res)
        if res["Type"] == "AWS::Serverless::Function":
            out[f"Arn:{name}Role"] = resolver.getatt(f"{name}Role.Arn")
    out.update(samples)
    return out


def trust_policies(template, resolver):
    out = {}
    for name, res in (template.get("Resources") or {}).items():
        if "Condition" in res and not resolver.condition(res["Condition"]):
            continue
        if res["Type"] == "AWS::IAM::Role":
            out[name] = resolver.resolve(res["Properties"]["AssumeRolePolicyDocument"])
    return out


def target_account(root, spec, keysmith):
    """infra/target-account.yaml deployed for the Keysmith deployment `keysmith` (its resolver)."""
    with open(os.path.join(root, spec["template"])) as f:
        template = yaml.safe_load(f)
    account = spec["account"]
    params = {
        "KeysmithAccountId": ACCOUNT,
        "SecretsPrefix": keysmith.ref("SecretsPrefix"),
        "IssueCredentialsRoleArn": keysmith.getatt("IssueCredentialsFunctionRole.Arn"),
        "ScheduledRotationRoleArn": keysmith.getatt("ScheduledRotationFunctionRole.Arn"),
        "SecretRotationRoleArn": keysmith.getatt("SecretRotationFunctionRole.Arn"),
        **spec.get("parameters", {}),
    }
    resolver = Resolver(template, params, account)
    policies = {}
    for owner, doc in lint_policies.policies(template, params, account):
        policies.setdefault(TARGET + owner, []).append(doc)
    trust = {TARGET + k: v for k, v in trust_policies(template, resolver).items()}
    vals = {
        f"Target:{k}": v
        for k, v in values(template, resolver, {}).items()
        if k not in ("Region", "Partition", "StackName")
    }
    vals["Target:Account"] = account
    return policies, trust, vals


def main(template_path, parameters_path):
    root = os.path.dirname(os.path.abspath(template_path))
    with open(template_path) as f:
        template = yaml.safe_load(f)
    with open(parameters_path) as f:
        sets = json.load(f)
    variants = {}
    for name, spec in sets.items():
        params = spec.get("parameters", {})
        resolver = Resolver(template, params)
        policies = {}
        for owner, doc in lint_policies.policies(template, params):
            policies.setdefault(owner, []).append(doc)
        vals = values(template, resolver, spec.get("samples", {}))
        trust = trust_policies(template, resolver)
        if "target_account" in spec:
            t_policies, t_trust, t_values = target_account(root, spec["target_account"], resolver)
            policies.update(t_policies)
            trust.update(t_trust)
            vals.update(t_values)
        variants[name] = {
            "parameters": params,
            "values": vals,
            "policies": policies,
            "trust": trust,
        }
    json.dump({"variants": variants}, sys.stdout, indent=1, sort_keys=True)
    print()


if __name__ == "__main__":
    main(*sys.argv[1:3])
