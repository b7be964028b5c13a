"""Every IAM policy of template.yaml as SAM builds it, for the simulator (make lint, SPEC 18).

Resolves the template with infra/lint_policies.py's resolver (stand-in ARNs for the stack's own
resources) once per parameter set of parameters.json, and prints JSON:
  {"variants": {"<name>": {"values": {placeholder: text}, "policies": {owner: [document]},
                           "trust": {role: document}}}}
`values` are what the expectation tables may write as {{Name}}: every parameter, the pseudo
parameters (Account, Region, Partition, StackName), {{Ref:<resource>}} and {{Arn:<resource>}},
and the parameter set's own `samples`.

Usage: python infra/simulator/template_policies.py template.yaml infra/simulator/parameters.json
"""

import json
import os
import sys

import yaml

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), ".."))
import lint_policies  # noqa: E402  (the resolver: one copy of the intrinsic-function rules)
from lint_policies import ACCOUNT, PARTITION, REGION, STACK, Resolver  # noqa: E402


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
    out.update(samples)
    return out


def trust_policies(template, resolver):
    out = {}
    for name, res in (template.get("Resources") or {}).items():
        if res["Type"] == "AWS::IAM::Role":
            out[name] = resolver.resolve(res["Properties"]["AssumeRolePolicyDocument"])
    return out


def main(template_path, parameters_path):
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
        variants[name] = {
            "parameters": params,
            "values": values(template, resolver, spec.get("samples", {})),
            "policies": policies,
            "trust": trust_policies(template, resolver),
        }
    json.dump({"variants": variants}, sys.stdout, indent=1, sort_keys=True)
    print()


if __name__ == "__main__":
    main(*sys.argv[1:3])
