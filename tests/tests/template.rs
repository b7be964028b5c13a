//! template.yaml's IAM policies, checked statically. moto never evaluates IAM conditions, so this
//! is what stands between the template and a stack that is too broad, or that fails, on AWS: a
//! condition on a key an action does not have never matches, and the `Allow` silently grants
//! nothing.

use keysmith::jobs::Job;
use serde_yaml::Value;

/// Condition keys and the IAM actions that support them, from the IAM Service Authorization
/// Reference, "Actions, resources, and condition keys for AWS Identity and Access Management
/// (IAM)" (docs.aws.amazon.com/service-authorization/latest/reference/list_awsidentityandaccessmanagementiam.html):
/// `iam:PermissionsBoundary` is listed on the actions below only (`AddUserToGroup`, whose resource
/// is the group, and `DeleteUser` do not have it); `iam:ResourceTag/${TagKey}` belongs to the
/// `user` resource type, so to actions on a user; `aws:TagKeys` to the tagging actions. A key not
/// in this table (and not global) fails the test: add it with its source.
const ACTION_KEYS: &[(&str, &[&str])] = &[
    (
        "iam:permissionsboundary",
        &[
            "iam:createuser",
            "iam:putuserpolicy",
            "iam:attachuserpolicy",
            "iam:detachuserpolicy",
            "iam:deleteuserpolicy",
            "iam:putuserpermissionsboundary",
            "iam:deleteuserpermissionsboundary",
            "iam:createrole",
            "iam:putrolepolicy",
            "iam:attachrolepolicy",
            "iam:detachrolepolicy",
            "iam:deleterolepolicy",
            "iam:putrolepermissionsboundary",
            "iam:deleterolepermissionsboundary",
        ],
    ),
    (
        "iam:resourcetag/",
        &[
            "iam:createaccesskey",
            "iam:deleteaccesskey",
            "iam:updateaccesskey",
            "iam:listaccesskeys",
            "iam:listusertags",
            "iam:getuser",
            "iam:deleteuser",
            "iam:taguser",
            "iam:untaguser",
        ],
    ),
    (
        "aws:tagkeys",
        &[
            "iam:taguser",
            "iam:untaguser",
            "iam:createuser",
            "sts:assumerole",
            "sts:tagsession",
        ],
    ),
    // "Actions, resources, and condition keys for AWS Security Token Service": AssumeRole and
    // TagSession take aws:RequestTag/${TagKey} (the session tags asked for).
    ("aws:requesttag/", &["sts:assumerole", "sts:tagsession"]),
    // Secrets Manager: the `Secret` resource type has aws:ResourceTag/${TagKey}.
    ("aws:resourcetag/", &["secretsmanager:getsecretvalue"]),
    // CloudWatch: PutMetricData has cloudwatch:namespace; EventBridge: PutEvents has
    // events:source (a list, one per entry).
    ("cloudwatch:namespace", &["cloudwatch:putmetricdata"]),
    ("events:source", &["events:putevents"]),
    // "Actions, resources, and condition keys for AWS Key Management Service": kms:ViaService on
    // every operation on a key; kms:EncryptionContext:${Key} on the cryptographic operations only
    // (not DescribeKey).
    (
        "kms:viaservice",
        &[
            "kms:decrypt",
            "kms:encrypt",
            "kms:generatedatakey",
            "kms:generatedatakey*",
            "kms:describekey",
        ],
    ),
    (
        "kms:encryptioncontext:",
        &[
            "kms:decrypt",
            "kms:encrypt",
            "kms:generatedatakey",
            "kms:generatedatakey*",
        ],
    ),
];

/// Global condition keys: present in every request's context (or absent alike for all actions).
const GLOBAL_KEYS: &[&str] = &[
    "aws:currenttime",
    "aws:epochtime",
    "aws:sourceaccount",
    "aws:sourcearn",
    "aws:principalarn",
    "aws:principalaccount",
    "aws:principalorgid",
    "aws:principaltag/",
    "aws:securetransport",
    "aws:sourceip",
    "aws:tokenissuetime",
    "aws:multifactorauthpresent",
    "aws:requestedregion",
];

/// The actions that can put permissions on a lease user, or change its ceiling.
const BOUNDED: &[&str] = &[
    "iam:CreateUser",
    "iam:PutUserPolicy",
    "iam:AttachUserPolicy",
    "iam:DetachUserPolicy",
    "iam:DeleteUserPolicy",
    "iam:PutUserPermissionsBoundary",
];
const KEY_ACTIONS: &[&str] = &[
    "iam:CreateAccessKey",
    "iam:DeleteAccessKey",
    "iam:UpdateAccessKey",
];
const API_FUNCTION: &str = "IssueCredentialsFunction";
const ROTATION_FUNCTIONS: &[&str] = &["SecretRotationFunction", "ScheduledRotationFunction"];
const LEASE_PATH: &str = ":user/keysmith/";
/// Revoking STS credentials puts `keysmith-revocations` on base users: these actions, on this
/// resource, and nothing else may touch a user's inline policies without the boundary condition.
const REVOCATION_USER_ACTIONS: &[&str] = &[
    "iam:ListUserPolicies",
    "iam:GetUserPolicy",
    "iam:PutUserPolicy",
    "iam:DeleteUserPolicy",
];
const BASE_USER_RESOURCE: &str = ":user${BaseUserPath}*";
const BINDING_KEY: &str = "iam:resourcetag/keysmith:rotation-secret";

#[derive(Debug)]
struct Statement {
    owner: String,
    /// Part of a function's own policy (a permission Keysmith holds), not a boundary (a ceiling
    /// for lease users).
    held: bool,
    sid: String,
    allow: bool,
    actions: Vec<String>,
    resources: Vec<String>,
    /// (operator, key in lower case, values as text)
    conditions: Vec<(String, String, String)>,
    /// The CloudFormation condition an `!If` puts the statement under.
    cfn_condition: Option<String>,
}

impl Statement {
    fn grants(&self, action: &str) -> bool {
        self.held && self.allow && self.actions.iter().any(|a| glob(a, action))
    }

    fn condition_on(&self, key: &str) -> Option<&(String, String, String)> {
        self.conditions.iter().find(|(_, k, _)| k == key)
    }

    fn name(&self) -> String {
        format!("{} statement {}", self.owner, self.sid)
    }
}

/// IAM's action matching: case-insensitive, `*` and `?` wildcards.
fn glob(pattern: &str, action: &str) -> bool {
    fn go(p: &[u8], a: &[u8]) -> bool {
        match (p.first(), a.first()) {
            (None, None) => true,
            (Some(b'*'), _) => go(&p[1..], a) || (!a.is_empty() && go(p, &a[1..])),
            (Some(b'?'), Some(_)) => go(&p[1..], &a[1..]),
            (Some(x), Some(y)) if x.eq_ignore_ascii_case(y) => go(&p[1..], &a[1..]),
            _ => false,
        }
    }
    go(pattern.as_bytes(), action.as_bytes())
}

/// Every scalar of a value, tags included (`!Sub arn:...`), as one string.
fn text(v: &Value) -> String {
    match v {
        Value::Null => String::new(),
        Value::Bool(b) => b.to_string(),
        Value::Number(n) => n.to_string(),
        Value::String(s) => s.clone(),
        Value::Sequence(items) => items.iter().map(text).collect::<Vec<_>>().join(" "),
        Value::Mapping(m) => m
            .iter()
            .map(|(k, v)| format!("{} {}", text(k), text(v)))
            .collect::<Vec<_>>()
            .join(" "),
        Value::Tagged(t) => format!("{} {}", t.tag, text(&t.value)),
    }
}

fn strings(v: Option<&Value>) -> Vec<String> {
    match v {
        None => Vec::new(),
        Some(Value::Sequence(items)) => items.iter().map(text).collect(),
        Some(other) => vec![text(other)],
    }
}

/// `!If [cond, then, else]` in short or long form.
fn as_if(v: &Value) -> Option<(String, &Value)> {
    let args = match v {
        Value::Tagged(t) if t.tag == "!If" => &t.value,
        Value::Mapping(m) if m.len() == 1 => m.get("Fn::If")?,
        _ => return None,
    };
    let args = args.as_sequence()?;
    Some((text(args.first()?), args.get(1)?))
}

fn statement(owner: &str, held: bool, v: &Value) -> Statement {
    let (cfn_condition, v) = match as_if(v) {
        Some((cond, then)) => (Some(cond), then),
        None => (None, v),
    };
    let mut conditions = Vec::new();
    if let Some(Value::Mapping(ops)) = v.get("Condition") {
        for (op, keys) in ops {
            if let Value::Mapping(keys) = keys {
                for (key, values) in keys {
                    conditions.push((text(op), text(key).to_lowercase(), text(values)));
                }
            }
        }
    }
    Statement {
        owner: owner.to_owned(),
        held,
        sid: v.get("Sid").map(text).unwrap_or_default(),
        allow: v.get("Effect").map(text).as_deref() == Some("Allow"),
        actions: strings(v.get("Action")),
        resources: strings(v.get("Resource")),
        conditions,
        cfn_condition,
    }
}

/// The statements of every function's inline policies and of every managed policy.
fn statements(template: &Value) -> Vec<Statement> {
    let mut out = Vec::new();
    let Some(Value::Mapping(resources)) = template.get("Resources") else {
        return out;
    };
    for (name, resource) in resources {
        let name = text(name);
        let kind = resource.get("Type").map(text);
        let held = kind.as_deref() == Some("AWS::Serverless::Function");
        let documents: Vec<&Value> = match kind.as_deref() {
            Some("AWS::Serverless::Function") => resource
                .get("Properties")
                .and_then(|p| p.get("Policies"))
                .and_then(Value::as_sequence)
                .map(|docs| docs.iter().collect())
                .unwrap_or_default(),
            Some("AWS::IAM::ManagedPolicy") => resource
                .get("Properties")
                .and_then(|p| p.get("PolicyDocument"))
                .into_iter()
                .collect(),
            _ => Vec::new(),
        };
        for doc in documents {
            for s in doc
                .get("Statement")
                .and_then(Value::as_sequence)
                .into_iter()
                .flatten()
            {
                out.push(statement(&name, held, s));
            }
        }
    }
    out
}

/// Everything wrong with the template's policies; empty when it is right.
fn violations(template: &Value) -> Vec<String> {
    let all = statements(template);
    let mut v = Vec::new();
    for s in &all {
        // Condition keys the statement's actions do not have.
        for (_, key, _) in &s.conditions {
            if GLOBAL_KEYS.iter().any(|g| key.starts_with(g)) {
                continue;
            }
            let Some((_, supported)) = ACTION_KEYS.iter().find(|(k, _)| key.starts_with(k)) else {
                v.push(format!(
                    "{}: condition key {key} is not in the table of supported keys",
                    s.name()
                ));
                continue;
            };
            for action in &s.actions {
                if !supported.contains(&action.to_lowercase().as_str()) {
                    v.push(format!(
                        "{}: {action} does not support the condition key {key}",
                        s.name()
                    ));
                }
            }
        }
        // Lease users stay under an allowed boundary, which nobody removes. The one exception is
        // the revocation policy on base users (SPEC §10): inline-policy actions only, on users
        // under BaseUserPath only (a path that cannot be /keysmith/, the lease users').
        let base_user_revocation = s
            .actions
            .iter()
            .all(|a| REVOCATION_USER_ACTIONS.contains(&a.as_str()))
            && !s.resources.is_empty()
            && s.resources.iter().all(|r| r.contains(BASE_USER_RESOURCE));
        if BOUNDED.iter().any(|a| s.grants(a)) && !base_user_revocation {
            match s.condition_on("iam:permissionsboundary") {
                Some((op, _, values))
                    if ["StringEquals", "ArnEquals"].contains(&op.as_str())
                        && values.contains("LeaseBoundaryPolicy") => {}
                _ => v.push(format!(
                    "{}: grants {:?} without an iam:PermissionsBoundary condition on the lease boundaries",
                    s.name(),
                    s.actions
                )),
            }
        }
        // Groups have no boundary key: the resource is the only limit.
        if s.grants("iam:AddUserToGroup")
            && !s
                .resources
                .iter()
                .all(|r| r.contains(":group${LeaseGroupPath}"))
        {
            v.push(format!(
                "{}: AddUserToGroup beyond the groups under LeaseGroupPath: {:?}",
                s.name(),
                s.resources
            ));
        }
        // Tagging a user with the binding tag would point a rotation at it.
        if s.grants("iam:TagUser") {
            match s.condition_on("aws:tagkeys") {
                Some((op, _, values))
                    if op == "ForAllValues:StringEquals"
                        && !values.contains("keysmith:rotation-secret") => {}
                _ => v.push(format!(
                    "{}: TagUser without a ForAllValues:StringEquals aws:TagKeys limit that excludes keysmith:rotation-secret",
                    s.name()
                )),
            }
        }
        if s.grants("iam:DeleteUserPermissionsBoundary") {
            v.push(format!("{}: may remove a permissions boundary", s.name()));
        }
        if s.owner == API_FUNCTION {
            for a in &s.actions {
                let lower = a.to_lowercase();
                let write = lower.starts_with("secretsmanager:")
                    && !["get", "describe", "list"]
                        .iter()
                        .any(|r| lower.starts_with(&format!("secretsmanager:{r}")));
                if s.allow && (write || lower == "*") {
                    v.push(format!(
                        "{}: the API function can write secrets ({a})",
                        s.name()
                    ));
                }
            }
            for a in KEY_ACTIONS {
                let outside = s.resources.iter().any(|r| !r.contains(LEASE_PATH));
                if s.grants(a) && (outside || *a == "iam:UpdateAccessKey") {
                    v.push(format!(
                        "{}: the API function can {a} outside the lease path: {:?}",
                        s.name(),
                        s.resources
                    ));
                }
            }
        }
        // The functions use a customer-managed key only through DynamoDB and Secrets Manager,
        // never directly (a direct kms:Decrypt would read any ciphertext made with the key), and
        // through Secrets Manager only for Keysmith's secrets.
        if s.held
            && s.allow
            && s.actions
                .iter()
                .any(|a| a.to_lowercase().starts_with("kms:"))
        {
            let via = s.condition_on("kms:viaservice");
            if via.is_none_or(|(op, _, _)| op != "StringEquals") {
                v.push(format!(
                    "{}: uses the KMS key without a kms:ViaService limit",
                    s.name()
                ));
            }
            if s.resources.iter().any(|r| r.contains('*')) {
                v.push(format!("{}: KMS actions on {:?}", s.name(), s.resources));
            }
            let secrets = via.is_some_and(|(_, _, values)| values.contains("secretsmanager"));
            let bound_to_prefix = s
                .condition_on("kms:encryptioncontext:secretarn")
                .is_some_and(|(op, _, values)| {
                    op == "StringLike" && values.contains("SecretsPrefix")
                });
            if secrets && !bound_to_prefix {
                v.push(format!(
                    "{}: decrypts secrets beyond SecretsPrefix (no kms:EncryptionContext:SecretARN limit)",
                    s.name()
                ));
            }
            let encrypts = ["kms:Encrypt", "kms:GenerateDataKey"]
                .iter()
                .any(|a| s.grants(a));
            if s.owner == API_FUNCTION && secrets && encrypts {
                v.push(format!(
                    "{}: the API function can encrypt secrets",
                    s.name()
                ));
            }
        }
        if ROTATION_FUNCTIONS.contains(&s.owner.as_str()) && KEY_ACTIONS.iter().any(|a| s.grants(a))
        {
            let bound = s.condition_on(BINDING_KEY).is_some_and(|(op, _, values)| {
                ["StringEquals", "StringLike"].contains(&op.as_str())
                    && values.contains("SecretsPrefix")
            });
            let lease_revocation = !s.grants("iam:CreateAccessKey")
                && !s.grants("iam:UpdateAccessKey")
                && s.resources.iter().all(|r| r.contains(LEASE_PATH));
            let old_key_report = s.actions.iter().all(|a| glob(a, "iam:UpdateAccessKey"))
                && s.cfn_condition.as_deref() == Some("DeactivateOldKeys");
            if !(bound || lease_revocation || old_key_report) {
                v.push(format!(
                    "{}: rotation key actions {:?} without the iam:ResourceTag/keysmith:rotation-secret condition",
                    s.name(),
                    s.actions
                ));
            }
            if bound
                && !all
                    .iter()
                    .any(|o| o.owner == s.owner && o.grants("iam:ListUserTags"))
            {
                v.push(format!(
                    "{}: the binding tag cannot be checked without iam:ListUserTags",
                    s.name()
                ));
            }
        }
    }
    v
}

fn template() -> Value {
    let path = keysmith_tests::repo_root().join("template.yaml");
    let text = std::fs::read_to_string(&path).unwrap();
    serde_yaml::from_str(&text).unwrap()
}

#[test]
fn the_templates_policies_have_no_violation() {
    let t = template();
    let found = statements(&t);
    assert!(found.len() > 20, "{found:?}");
    assert!(
        found.iter().any(|s| s.cfn_condition.is_some()),
        "the conditional statement was read"
    );
    let v = violations(&t);
    assert!(v.is_empty(), "{v:#?}");
}

fn one_statement(function: &str, statement: &str) -> Value {
    let indented = statement
        .lines()
        .map(|l| format!("              {l}"))
        .collect::<Vec<_>>()
        .join("\n");
    let doc = format!(
        "Resources:\n  {function}:\n    Type: AWS::Serverless::Function\n    Properties:\n      Policies:\n        - Statement:\n{indented}\n"
    );
    serde_yaml::from_str(&doc).unwrap_or_else(|e| panic!("{doc}: {e}"))
}

fn flagged(function: &str, statement: &str, expect: &str) {
    let v = violations(&one_statement(function, statement));
    assert!(
        v.iter().any(|m| m.contains(expect)),
        "expected {expect:?} in {v:#?}"
    );
}

fn clean(function: &str, statement: &str) {
    let v = violations(&one_statement(function, statement));
    assert!(v.is_empty(), "{v:#?}");
}

#[test]
fn the_checker_flags_secret_writes_and_key_actions_of_the_api_function() {
    flagged(
        API_FUNCTION,
        "- Sid: Bad\n  Effect: Allow\n  Action: [secretsmanager:GetSecretValue, secretsmanager:PutSecretValue]\n  Resource: !Sub \"arn:aws:secretsmanager:*:*:secret:${SecretsPrefix}*\"",
        "can write secrets (secretsmanager:PutSecretValue)",
    );
    flagged(
        API_FUNCTION,
        "- Sid: Bad\n  Effect: Allow\n  Action: secretsmanager:UpdateSecretVersionStage\n  Resource: \"*\"",
        "can write secrets",
    );
    flagged(
        API_FUNCTION,
        "- Sid: Bad\n  Effect: Allow\n  Action: \"*\"\n  Resource: \"*\"",
        "can write secrets (*)",
    );
    flagged(
        API_FUNCTION,
        "- Sid: Bad\n  Effect: Allow\n  Action: [iam:CreateAccessKey, iam:DeleteAccessKey]\n  Resource: !Sub \"arn:${AWS::Partition}:iam::${AWS::AccountId}:user${RotatedUserPath}*\"",
        "can iam:CreateAccessKey outside the lease path",
    );
    flagged(
        API_FUNCTION,
        "- Sid: Bad\n  Effect: Allow\n  Action: iam:*AccessKey\n  Resource: \"*\"",
        "can iam:DeleteAccessKey outside the lease path",
    );
    clean(
        API_FUNCTION,
        "- Sid: Good\n  Effect: Allow\n  Action: [iam:CreateAccessKey, iam:DeleteAccessKey, secretsmanager:GetSecretValue]\n  Resource: !Sub \"arn:${AWS::Partition}:iam::${AWS::AccountId}:user/keysmith/*\"",
    );
}

#[test]
fn the_checker_flags_lease_user_actions_without_the_boundary_condition() {
    for action in BOUNDED {
        flagged(
            "AnyFunction",
            &format!("- Sid: Bad\n  Effect: Allow\n  Action: [{action}]\n  Resource: \"*\""),
            "without an iam:PermissionsBoundary condition",
        );
    }
    // A boundary anyone picks is no ceiling.
    flagged(
        "AnyFunction",
        "- Sid: Bad\n  Effect: Allow\n  Action: iam:CreateUser\n  Resource: \"*\"\n  Condition:\n    StringLike:\n      iam:PermissionsBoundary: \"*\"",
        "without an iam:PermissionsBoundary condition",
    );
    flagged(
        "AnyFunction",
        "- Sid: Bad\n  Effect: Allow\n  Action: iam:DeleteUserPermissionsBoundary\n  Resource: \"*\"",
        "may remove a permissions boundary",
    );
    clean(
        "AnyFunction",
        "- Sid: Good\n  Effect: Allow\n  Action: [iam:CreateUser, iam:AttachUserPolicy]\n  Resource: \"*\"\n  Condition:\n    StringEquals:\n      iam:PermissionsBoundary: [!Ref LeaseBoundaryPolicy]",
    );
}

#[test]
fn only_inline_policy_actions_on_base_users_escape_the_boundary_condition() {
    let good = "- Sid: Good\n  Effect: Allow\n  Action: [iam:GetUserPolicy, iam:PutUserPolicy, iam:DeleteUserPolicy, iam:ListUserPolicies]\n  Resource: !Sub \"arn:${AWS::Partition}:iam::${AWS::AccountId}:user${BaseUserPath}*\"";
    clean(API_FUNCTION, good);
    // Another action, or another resource, and the boundary rule applies again.
    flagged(
        API_FUNCTION,
        "- Sid: Bad\n  Effect: Allow\n  Action: [iam:PutUserPolicy, iam:AttachUserPolicy]\n  Resource: !Sub \"arn:${AWS::Partition}:iam::${AWS::AccountId}:user${BaseUserPath}*\"",
        "without an iam:PermissionsBoundary condition",
    );
    flagged(
        API_FUNCTION,
        "- Sid: Bad\n  Effect: Allow\n  Action: iam:PutUserPolicy\n  Resource: !Sub \"arn:${AWS::Partition}:iam::${AWS::AccountId}:user/*\"",
        "without an iam:PermissionsBoundary condition",
    );
    // BaseUserPath can never be the lease users' path.
    let t = template();
    let pattern = t["Parameters"]["BaseUserPath"]["AllowedPattern"]
        .as_str()
        .unwrap();
    assert!(pattern.starts_with("^/(?!keysmith/)"), "{pattern}");
    // Both functions that write keysmith-revocations have it on the roles and the base users.
    for function in [API_FUNCTION, "ScheduledRotationFunction"] {
        let all = statements(&t);
        for action in [
            "iam:PutRolePolicy",
            "iam:DeleteRolePolicy",
            "iam:GetRolePolicy",
        ] {
            assert!(
                all.iter().any(|s| s.owner == function
                    && s.grants(action)
                    && !s.resources.is_empty()
                    && s.resources.iter().all(|r| r.contains("AssumableRoleArns"))),
                "{function} lacks {action} on AssumableRoleArns"
            );
        }
        assert!(all.iter().any(|s| s.owner == function
            && s.grants("iam:PutUserPolicy")
            && s.resources.iter().all(|r| r.contains(BASE_USER_RESOURCE))));
    }
}

#[test]
fn the_checker_flags_any_group_and_binding_tags() {
    flagged(
        "AnyFunction",
        "- Sid: Bad\n  Effect: Allow\n  Action: iam:AddUserToGroup\n  Resource: !Sub \"arn:${AWS::Partition}:iam::${AWS::AccountId}:group/*\"",
        "AddUserToGroup beyond the groups under LeaseGroupPath",
    );
    flagged(
        "AnyFunction",
        "- Sid: Bad\n  Effect: Allow\n  Action: iam:TagUser\n  Resource: \"*\"",
        "TagUser without",
    );
    flagged(
        "AnyFunction",
        "- Sid: Bad\n  Effect: Allow\n  Action: iam:TagUser\n  Resource: \"*\"\n  Condition:\n    ForAllValues:StringEquals:\n      aws:TagKeys: [keysmith:lease-id, keysmith:rotation-secret]",
        "TagUser without",
    );
    clean(
        "AnyFunction",
        "- Sid: Good\n  Effect: Allow\n  Action: [iam:AddUserToGroup, iam:RemoveUserFromGroup]\n  Resource: !Sub \"arn:${AWS::Partition}:iam::${AWS::AccountId}:group${LeaseGroupPath}*\"\n- Sid: Tags\n  Effect: Allow\n  Action: iam:TagUser\n  Resource: \"*\"\n  Condition:\n    ForAllValues:StringEquals:\n      aws:TagKeys: [keysmith:lease-id]",
    );
}

#[test]
fn the_checker_flags_condition_keys_an_action_does_not_support() {
    // AddUserToGroup acts on the group: on AWS this Allow would never match.
    flagged(
        "AnyFunction",
        "- Sid: Bad\n  Effect: Allow\n  Action: [iam:CreateUser, iam:AddUserToGroup]\n  Resource: \"*\"\n  Condition:\n    StringEquals:\n      iam:PermissionsBoundary: !Ref LeaseBoundaryPolicy",
        "iam:AddUserToGroup does not support the condition key iam:permissionsboundary",
    );
    flagged(
        "AnyFunction",
        "- Sid: Bad\n  Effect: Allow\n  Action: iam:AddUserToGroup\n  Resource: \"*\"\n  Condition:\n    StringLike:\n      iam:ResourceTag/team: a",
        "iam:AddUserToGroup does not support the condition key iam:resourcetag/team",
    );
    flagged(
        "AnyFunction",
        "- Sid: Bad\n  Effect: Allow\n  Action: iam:ListUsers\n  Resource: \"*\"\n  Condition:\n    StringEquals:\n      iam:MadeUpKey: a",
        "iam:madeupkey is not in the table",
    );
    clean(
        "AnyFunction",
        "- Sid: Good\n  Effect: Allow\n  Action: iam:ListUsers\n  Resource: \"*\"\n  Condition:\n    DateLessThan:\n      aws:CurrentTime: \"2030-01-01T00:00:00Z\"",
    );
}

#[test]
fn the_checker_flags_rotation_key_actions_without_the_binding_tag() {
    for function in ROTATION_FUNCTIONS {
        flagged(
            function,
            "- Sid: Bad\n  Effect: Allow\n  Action: [iam:ListAccessKeys, iam:CreateAccessKey, iam:DeleteAccessKey]\n  Resource: !Sub \"arn:${AWS::Partition}:iam::${AWS::AccountId}:user${RotatedUserPath}*\"",
            "without the iam:ResourceTag/keysmith:rotation-secret condition",
        );
        flagged(
            function,
            "- Sid: Bad\n  Effect: Allow\n  Action: iam:UpdateAccessKey\n  Resource: \"*\"",
            "without the iam:ResourceTag/keysmith:rotation-secret condition",
        );
        // Bound, but the tag cannot be read.
        flagged(
            function,
            "- Sid: Bound\n  Effect: Allow\n  Action: iam:CreateAccessKey\n  Resource: \"*\"\n  Condition:\n    StringLike:\n      iam:ResourceTag/keysmith:rotation-secret: !Sub \"${SecretsPrefix}*\"",
            "without iam:ListUserTags",
        );
        clean(
            function,
            "- Sid: Bound\n  Effect: Allow\n  Action: [iam:CreateAccessKey, iam:DeleteAccessKey]\n  Resource: \"*\"\n  Condition:\n    StringLike:\n      iam:ResourceTag/keysmith:rotation-secret: !Sub \"${SecretsPrefix}*\"\n- Sid: Tags\n  Effect: Allow\n  Action: iam:ListUserTags\n  Resource: \"*\"",
        );
    }
}

fn resource<'a>(t: &'a Value, name: &str) -> &'a Value {
    t.get("Resources")
        .and_then(|r| r.get(name))
        .unwrap_or_else(|| panic!("no resource {name}"))
}

#[test]
fn the_api_function_may_only_enqueue_rotations_and_knows_the_lease_boundaries() {
    let t = template();
    let api = resource(&t, API_FUNCTION);
    let env = &api["Properties"]["Environment"]["Variables"];
    assert_eq!(
        text(&env["KEYSMITH_ROTATION_QUEUE_URL"]),
        "!Ref RotationQueue"
    );
    assert!(text(&env["KEYSMITH_LEASE_BOUNDARY_ARNS"]).contains("LeaseBoundaryPolicy"));
    // Nothing starts a function any more: rotate-now and the hourly run both enqueue (SPEC 14).
    let invoke: Vec<Statement> = statements(&t)
        .into_iter()
        .filter(|s| s.grants("lambda:InvokeFunction"))
        .collect();
    assert!(invoke.is_empty(), "{invoke:?}");
    let mut send: Vec<(String, Vec<String>)> = statements(&t)
        .into_iter()
        .filter(|s| s.grants("sqs:SendMessage") && s.held)
        .map(|s| (s.owner.clone(), s.resources.clone()))
        .collect();
    send.sort();
    assert_eq!(
        send,
        [
            (
                API_FUNCTION.to_owned(),
                vec!["!GetAtt RotationQueue.Arn".to_owned()]
            ),
            (
                "ScheduledRotationFunction".to_owned(),
                vec!["!GetAtt RotationQueue.Arn".to_owned()]
            ),
        ]
    );
}

#[test]
fn rotation_queue_outlives_a_worker_and_dead_letters_after_three_receives() {
    let t = template();
    let queue = &resource(&t, "RotationQueue")["Properties"];
    let worker = &resource(&t, "ScheduledRotationFunction")["Properties"];
    let visibility = queue["VisibilityTimeout"].as_u64().unwrap();
    assert!(visibility > worker["Timeout"].as_u64().unwrap());
    assert_eq!(queue["SqsManagedSseEnabled"], true);
    assert_eq!(queue["RedrivePolicy"]["maxReceiveCount"], 3);
    assert_eq!(
        text(&queue["RedrivePolicy"]["deadLetterTargetArn"]),
        "!GetAtt RotationDeadLetterQueue.Arn"
    );
    let mapping = &worker["Events"]["RotationQueue"]["Properties"];
    assert_eq!(
        mapping["FunctionResponseTypes"][0],
        "ReportBatchItemFailures"
    );
    assert_eq!(mapping["BatchSize"], 10);
    assert_eq!(
        text(&mapping["ScalingConfig"]["MaximumConcurrency"]),
        "!Ref RotationMaxConcurrency"
    );
    assert_eq!(t["Parameters"]["RotationMaxConcurrency"]["Default"], 10);
    assert_eq!(
        text(&worker["Environment"]["Variables"]["KEYSMITH_ROTATION_QUEUE_URL"]),
        "!Ref RotationQueue"
    );
    let alarm = &resource(&t, "RotationDeadLetterAlarm")["Properties"];
    assert_eq!(
        text(&alarm["Dimensions"][0]["Value"]),
        "!GetAtt RotationDeadLetterQueue.QueueName"
    );
}

#[test]
fn the_sweep_cleans_abandoned_leases_within_five_minutes_on_its_own_event_and_rotations_hourly() {
    let t = template();
    let events = &resource(&t, "ScheduledRotationFunction")["Properties"]["Events"];
    let hourly = &events["Hourly"]["Properties"];
    assert_eq!(text(&hourly["Schedule"]), "rate(1 hour)");
    assert!(
        hourly.get("Input").is_none(),
        "the standard scheduled event"
    );
    let sample: aws_lambda_events::eventbridge::EventBridgeEvent =
        serde_json::from_value(keysmith_tests::event("scheduled.json")).unwrap();
    assert_eq!(Job::of(&sample.detail), Job::Full);

    let sweep = &events["LeaseSweep"]["Properties"];
    // SPEC §5: an abandoned issuance is cleaned up within 5 minutes of its start: the pending
    // grace plus at most one sweep interval.
    let schedule = text(&sweep["Schedule"]);
    let minutes: i64 = schedule
        .strip_prefix("rate(")
        .and_then(|r| r.strip_suffix(" minutes)"))
        .and_then(|n| n.parse().ok())
        .unwrap_or_else(|| panic!("{schedule}"));
    assert!(
        keysmith::lease::PENDING_GRACE + chrono::Duration::minutes(minutes)
            <= chrono::Duration::minutes(5),
        "{schedule}"
    );
    // A pending lease is swept after the grace: an issuance must be over by then, or the sweep
    // would delete the user of an issuance still running.
    let timeout = resource(&t, API_FUNCTION)["Properties"]
        .get("Timeout")
        .unwrap_or(&t["Globals"]["Function"]["Timeout"])
        .as_i64()
        .unwrap();
    assert!(
        chrono::Duration::seconds(timeout) < keysmith::lease::PENDING_GRACE,
        "{timeout}"
    );
    let input: aws_lambda_events::eventbridge::EventBridgeEvent =
        serde_json::from_str(&text(&sweep["Input"])).unwrap();
    assert_eq!(Job::of(&input.detail), Job::Sweep);
    let sample: aws_lambda_events::eventbridge::EventBridgeEvent =
        serde_json::from_value(keysmith_tests::event("sweep.json")).unwrap();
    assert_eq!(Job::of(&sample.detail), Job::Sweep);
}

#[test]
fn secrets_manager_may_invoke_the_hook_only_for_keysmiths_secrets_and_paths_are_explicit() {
    let t = template();
    let permission = &resource(&t, "SecretRotationPermission")["Properties"];
    assert_eq!(text(&permission["SourceAccount"]), "!Ref AWS::AccountId");
    assert!(text(&permission["SourceArn"]).contains(":secret:${SecretsPrefix}*"));
    let path = &t["Parameters"]["RotatedUserPath"];
    assert!(path.get("Default").is_none(), "{path:?}");
    let pattern = text(&path["AllowedPattern"]);
    assert!(pattern.contains("(?!keysmith/)"), "{pattern}");
}

/// SPEC §11: an alarm for each failure kind, to the alarm topic; the API function's concurrency
/// is capped; asynchronous invocations that fail land somewhere.
#[test]
fn every_failure_kind_has_an_alarm_and_the_api_has_reserved_concurrency() {
    let t = template();
    let resources = t["Resources"].as_mapping().unwrap();
    let alarms: Vec<(String, String, String)> = resources
        .values()
        .filter(|r| r["Type"].as_str() == Some("AWS::CloudWatch::Alarm"))
        .map(|r| {
            let p = &r["Properties"];
            assert!(
                text(&p["AlarmActions"]).contains("AlarmTopic"),
                "an alarm nobody hears: {p:?}"
            );
            (
                text(&p["Namespace"]),
                text(&p["MetricName"]),
                text(&p["Dimensions"]),
            )
        })
        .collect();
    let has = |ns: &str, metric: &str, dim: &str| {
        alarms
            .iter()
            .any(|(n, m, d)| n == ns && m == metric && d.contains(dim))
    };
    // The metric names the functions emit (keysmith::ops), under the dimension the alarm names.
    use keysmith::ops::Metric;
    for m in [
        Metric::RotationFailed,
        Metric::SweepFailed,
        Metric::AuditWriteFailed,
    ] {
        assert!(
            has("Keysmith", m.name(), "Keysmith"),
            "no alarm on {}: {alarms:?}",
            m.name()
        );
    }
    assert!(has("AWS/ApiGateway", "5xx", "HttpApi"), "{alarms:?}");
    assert!(has("AWS/Lambda", "Throttles", API_FUNCTION), "{alarms:?}");
    assert!(
        has("AWS/Lambda", "Errors", "ScheduledRotationFunction"),
        "{alarms:?}"
    );
    let api = resource(&t, API_FUNCTION);
    assert_eq!(
        text(&api["Properties"]["ReservedConcurrentExecutions"]),
        "!Ref ApiReservedConcurrency"
    );
    for f in ["ScheduledRotationFunction", "SecretRotationFunction"] {
        let on_failure =
            &resource(&t, f)["Properties"]["EventInvokeConfig"]["DestinationConfig"]["OnFailure"];
        assert_eq!(on_failure["Type"].as_str(), Some("SQS"), "{f}");
    }
}

#[test]
fn the_checker_flags_direct_or_unbounded_use_of_the_kms_key() {
    let key = "  Resource: !If [CreateKmsKey, !GetAtt KeysmithKey.Arn, !Ref KmsKey]";
    flagged(
        "AnyFunction",
        &format!("- Sid: Bad\n  Effect: Allow\n  Action: kms:Decrypt\n{key}"),
        "without a kms:ViaService limit",
    );
    flagged(
        "AnyFunction",
        "- Sid: Bad\n  Effect: Allow\n  Action: kms:Decrypt\n  Resource: \"*\"\n  Condition:\n    StringEquals:\n      kms:ViaService: dynamodb.us-east-1.amazonaws.com",
        "KMS actions on [\"*\"]",
    );
    flagged(
        "AnyFunction",
        &format!("- Sid: Bad\n  Effect: Allow\n  Action: kms:Decrypt\n{key}\n  Condition:\n    StringEquals:\n      kms:ViaService: !Sub \"secretsmanager.${{AWS::Region}}.amazonaws.com\""),
        "decrypts secrets beyond SecretsPrefix",
    );
    flagged(
        API_FUNCTION,
        &format!("- Sid: Bad\n  Effect: Allow\n  Action: [kms:Decrypt, kms:GenerateDataKey]\n{key}\n  Condition:\n    StringEquals:\n      kms:ViaService: !Sub \"secretsmanager.${{AWS::Region}}.amazonaws.com\"\n    StringLike:\n      kms:EncryptionContext:SecretARN: !Sub \"arn:aws:secretsmanager:*:*:secret:${{SecretsPrefix}}*\""),
        "the API function can encrypt secrets",
    );
    flagged(
        "AnyFunction",
        &format!("- Sid: Bad\n  Effect: Allow\n  Action: kms:DescribeKey\n{key}\n  Condition:\n    StringEquals:\n      kms:ViaService: dynamodb.us-east-1.amazonaws.com\n    StringLike:\n      kms:EncryptionContext:SecretARN: x"),
        "kms:DescribeKey does not support the condition key kms:encryptioncontext:secretarn",
    );
    clean(
        API_FUNCTION,
        &format!("- Sid: Good\n  Effect: Allow\n  Action: kms:Decrypt\n{key}\n  Condition:\n    StringEquals:\n      kms:ViaService: !Sub \"secretsmanager.${{AWS::Region}}.amazonaws.com\"\n    StringLike:\n      kms:EncryptionContext:SecretARN: !Sub \"arn:aws:secretsmanager:*:*:secret:${{SecretsPrefix}}*\""),
    );
}

/// `!If [cond, then, else]`: (cond, then, else).
fn if_parts(v: &Value) -> (String, &Value, &Value) {
    let Value::Tagged(t) = v else {
        panic!("not an !If: {v:?}")
    };
    assert_eq!(t.tag, "!If");
    let args = t.value.as_sequence().expect("!If takes a list");
    (text(&args[0]), &args[1], &args[2])
}

#[test]
fn a_customer_managed_key_is_optional_and_covers_the_tables_and_secrets() {
    let t = template();
    let param = &t["Parameters"]["KmsKey"];
    assert_eq!(text(&param["Default"]), "aws-managed");
    let pattern = allowed_pattern(&text(&param["AllowedPattern"]));
    for ok in [
        "aws-managed",
        "create",
        "arn:aws:kms:eu-west-1:123456789012:key/1234abcd-12ab-34cd-56ef-1234567890ab",
    ] {
        assert!(pattern(ok), "{ok} refused");
    }
    for bad in [
        "",
        "alias/aws/dynamodb",
        "arn:aws:kms:eu-west-1:123456789012:alias/x",
        "*",
    ] {
        assert!(!pattern(bad), "{bad} accepted");
    }
    let key = resource(&t, "KeysmithKey");
    assert_eq!(text(&key["Condition"]), "CreateKmsKey");
    assert_eq!(key["Properties"]["EnableKeyRotation"], Value::Bool(true));
    // The tables are retained on stack deletion: so is the key that can read them.
    assert_eq!(text(&key["DeletionPolicy"]), "Retain");
    for table in ["StateTable", "AuditTable"] {
        let (cond, cmk, default) = if_parts(&resource(&t, table)["Properties"]["SSESpecification"]);
        assert_eq!(cond, "UseCustomerKey");
        assert_eq!(text(&cmk["SSEType"]), "KMS");
        assert!(text(&cmk["KMSMasterKeyId"]).contains("KeysmithKey.Arn"));
        assert!(text(&cmk["KMSMasterKeyId"]).contains("Ref KmsKey"));
        assert_eq!(default["SSEEnabled"], Value::Bool(true));
    }
    let (cond, secret_key, _) =
        if_parts(&resource(&t, "ExampleRotatedSecret")["Properties"]["KmsKeyId"]);
    assert_eq!(cond, "UseCustomerKey");
    assert!(text(secret_key).contains("KeysmithKey.Arn"));
    // Each function may use the key, through DynamoDB and Secrets Manager, only when it is set;
    // only the rotation functions may encrypt secrets with it.
    let all = statements(&t);
    for function in [API_FUNCTION, ROTATION_FUNCTIONS[0], ROTATION_FUNCTIONS[1]] {
        let kms: Vec<&Statement> = all
            .iter()
            .filter(|s| s.owner == function && s.actions.iter().any(|a| a.starts_with("kms:")))
            .collect();
        assert_eq!(kms.len(), 2, "{function}: {kms:?}");
        assert!(kms
            .iter()
            .all(|s| s.cfn_condition.as_deref() == Some("UseCustomerKey")));
        let writes_secrets = kms.iter().any(|s| {
            s.grants("kms:GenerateDataKey")
                && s.condition_on("kms:viaservice")
                    .is_some_and(|c| c.2.contains("secretsmanager"))
        });
        assert_eq!(writes_secrets, function != API_FUNCTION, "{function}");
    }
}

/// The parameter's `AllowedPattern` as a matcher (CloudFormation matches the whole value).
fn allowed_pattern(pattern: &str) -> impl Fn(&str) -> bool {
    let re = regex_lite::Regex::new(pattern).unwrap();
    move |s| {
        re.find(s)
            .is_some_and(|m| m.start() == 0 && m.end() == s.len())
    }
}

/// SPEC 12: approvers are told through an optional topic (an existing one, or one the stack
/// creates for an e-mail address) fed by a rule on `Access Requested` and `Break Glass Used`
/// whose message carries the command that approves; break glass pages through an alarm.
#[test]
fn approvals_reach_an_optional_topic_and_break_glass_pages() {
    let t = template();
    for p in ["ApprovalsTopicArn", "ApprovalsEmail"] {
        assert_eq!(t["Parameters"][p]["Default"], "", "{p} is optional");
    }
    let rule = resource(&t, "ApprovalsRule");
    assert_eq!(rule["Condition"], "NotifyApprovers");
    let pattern = &rule["Properties"]["EventPattern"];
    assert_eq!(strings(Some(&pattern["source"])), ["keysmith"]);
    assert_eq!(
        strings(Some(&pattern["detail-type"])),
        ["Access Requested", "Break Glass Used"]
    );
    let target = &rule["Properties"]["Targets"][0];
    let transformer = &target["InputTransformer"];
    assert_eq!(transformer["InputPathsMap"]["message"], "$.detail.message");
    assert_eq!(
        transformer["InputPathsMap"]["id"],
        "$.detail.access_request_id"
    );
    assert!(text(&target["Arn"]).contains("ApprovalsTopicArn"));
    assert!(text(&target["Arn"]).contains("ApprovalsTopic"));
    // Only the rule may publish to the topic the stack creates.
    let policy =
        &resource(&t, "ApprovalsTopicPolicy")["Properties"]["PolicyDocument"]["Statement"][0];
    assert_eq!(policy["Principal"]["Service"], "events.amazonaws.com");
    assert!(text(&policy["Condition"]).contains("ApprovalsRule"));
    let alarm = &resource(&t, "BreakGlassAlarm")["Properties"];
    assert_eq!(
        alarm["MetricName"],
        keysmith::ops::Metric::BreakGlassUsed.name()
    );
    assert_eq!(alarm["Threshold"], 1);
}
