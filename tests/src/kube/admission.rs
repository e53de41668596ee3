//! Admission webhooks, as a cluster sees them when their servers cannot be reached: the test
//! server never calls a webhook, so every registered webhook whose rules and selectors match
//! a request "fails", and its `failurePolicy` decides (`Fail`, the default, refuses the
//! request with kube-apiserver's 500 "failed calling webhook"; `Ignore` lets it through).
//! That is what a restore meets in a disaster, when a backed-up webhook configuration comes
//! back before the Deployment that served it. `matchConditions` (CEL) are not evaluated.

use serde_json::Value;

use super::registry::ResourceType;
use super::selectors::LabelSelector;
use super::status::ApiError;
use super::store::Store;

/// The operation being admitted.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Operation {
    /// POST.
    Create,
    /// PUT or PATCH of the main resource.
    Update,
}

impl Operation {
    fn as_str(self) -> &'static str {
        match self {
            Self::Create => "CREATE",
            Self::Update => "UPDATE",
        }
    }
}

/// Which webhooks run: mutating ones before the object is defaulted and validated,
/// validating ones after.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Phase {
    /// MutatingWebhookConfigurations.
    Mutating,
    /// ValidatingWebhookConfigurations.
    Validating,
}

const GROUP: &str = "admissionregistration.k8s.io";

fn strings(v: &Value) -> Vec<&str> {
    v.as_array()
        .map(|a| a.iter().filter_map(Value::as_str).collect())
        .unwrap_or_default()
}

fn listed(list: &Value, want: &str) -> bool {
    strings(list).iter().any(|s| *s == "*" || *s == want)
}

fn rule_matches(rule: &Value, rt: &ResourceType, op: Operation) -> bool {
    let resources = strings(&rule["resources"]);
    let resource_ok = resources
        .iter()
        .any(|r| *r == "*" || *r == "*/*" || *r == rt.plural);
    let scope_ok = match rule["scope"].as_str().unwrap_or("*") {
        "Cluster" => !rt.namespaced,
        "Namespaced" => rt.namespaced,
        _ => true,
    };
    listed(&rule["operations"], op.as_str())
        && listed(&rule["apiGroups"], &rt.group)
        && listed(&rule["apiVersions"], &rt.version)
        && resource_ok
        && scope_ok
}

/// A `metav1.LabelSelector` as the selector string the server parses; `None` if it uses an
/// operator this server does not know (then it matches nothing, to stay on the safe side).
fn selector_text(sel: &Value) -> Option<String> {
    let mut terms = Vec::new();
    if let Some(labels) = sel["matchLabels"].as_object() {
        for (k, v) in labels {
            terms.push(format!("{k}={}", v.as_str().unwrap_or("")));
        }
    }
    for e in sel["matchExpressions"].as_array().into_iter().flatten() {
        let key = e["key"].as_str().unwrap_or("");
        let values = strings(&e["values"]).join(",");
        terms.push(match e["operator"].as_str().unwrap_or("") {
            "In" => format!("{key} in ({values})"),
            "NotIn" => format!("{key} notin ({values})"),
            "Exists" => key.to_string(),
            "DoesNotExist" => format!("!{key}"),
            _ => return None,
        });
    }
    Some(terms.join(","))
}

fn selects(sel: &Value, labelled: &Value) -> bool {
    if sel.is_null() {
        return true;
    }
    selector_text(sel)
        .and_then(|t| LabelSelector::parse(&t).ok())
        .is_some_and(|s| s.matches(labelled))
}

/// Why calling `hook` fails here, worded like the API server's error for a webhook Service
/// that is missing or has no endpoints.
fn call_failure(store: &Store, hook: &Value) -> String {
    let name = hook["name"].as_str().unwrap_or("");
    let cc = &hook["clientConfig"];
    let detail = match cc["service"].as_object() {
        Some(svc) => {
            let (sname, sns) = (
                svc.get("name").and_then(Value::as_str).unwrap_or(""),
                svc.get("namespace").and_then(Value::as_str).unwrap_or(""),
            );
            let port = svc.get("port").and_then(Value::as_u64).unwrap_or(443);
            let path = svc.get("path").and_then(Value::as_str).unwrap_or("/");
            let exists = store
                .objects_of("", "services")
                .any(|(k, _)| k.2 == sns && k.3 == sname);
            let why = if exists {
                format!("no endpoints available for service \"{sname}\"")
            } else {
                format!("service \"{sname}\" not found")
            };
            format!("Post \"https://{sname}.{sns}.svc:{port}{path}?timeout=10s\": {why}")
        }
        None => format!(
            "Post \"{}?timeout=10s\": the test API server does not call webhooks",
            cc["url"].as_str().unwrap_or("")
        ),
    };
    format!("failed calling webhook \"{name}\": failed to call webhook: {detail}")
}

/// Runs the webhooks of `phase` registered for this request; `Err` when one with
/// `failurePolicy: Fail` matches.
pub fn check(
    store: &Store,
    rt: &ResourceType,
    ns: Option<&str>,
    obj: &Value,
    op: Operation,
    phase: Phase,
) -> Result<(), ApiError> {
    // Requests on admission configuration itself never go to webhooks.
    if rt.group == GROUP {
        return Ok(());
    }
    let plural = match phase {
        Phase::Mutating => "mutatingwebhookconfigurations",
        Phase::Validating => "validatingwebhookconfigurations",
    };
    let mut configs = store.objects_of(GROUP, plural).peekable();
    if configs.peek().is_none() {
        return Ok(());
    }
    let namespace = ns.filter(|_| rt.namespaced).and_then(|ns| {
        let key = (
            String::new(),
            "namespaces".to_string(),
            String::new(),
            ns.to_string(),
        );
        store.objects.get(&key)
    });
    let is_namespace = rt.group.is_empty() && rt.plural == "namespaces" && rt.crd.is_none();
    for (_, config) in configs {
        for hook in config["webhooks"].as_array().into_iter().flatten() {
            let rules = hook["rules"].as_array().into_iter().flatten();
            if !rules.into_iter().any(|r| rule_matches(r, rt, op)) {
                continue;
            }
            let ns_ok = match (namespace, is_namespace) {
                (Some(n), _) => selects(&hook["namespaceSelector"], n),
                (None, true) => selects(&hook["namespaceSelector"], obj),
                (None, false) => true,
            };
            if !ns_ok || !selects(&hook["objectSelector"], obj) {
                continue;
            }
            if hook["failurePolicy"].as_str() == Some("Ignore") {
                continue;
            }
            return Err(ApiError::internal_error(call_failure(store, hook)));
        }
    }
    Ok(())
}
