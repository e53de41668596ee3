//! Backup hooks: a command run in a pod's container just before its volumes are snapshotted
//! (`pre`) and just after (`post`), so an application can flush and freeze its files
//! (`fsfreeze --freeze /data`) for a consistent snapshot and thaw them at once. Read from the
//! pod's annotations, Lifeboat's or Velero's (`pre.hook.backup.velero.io/command`, …), so pods
//! annotated for Velero need no change:
//!
//! - `<phase>.hook.backup.lifeboat.dev/command` or `<phase>.hook.backup.velero.io/command`: a
//!   JSON array (`["/sbin/fsfreeze", "--freeze", "/data"]`) or one word;
//! - `…/container`: the container (default: the pod's first);
//! - `…/timeout`: how long it may run (`30s`, `1m`; default 30 s);
//! - `…/on-error`: `Fail` (default: the backup is PartiallyFailed) or `Continue` (a warning).
//!
//! Only running pods that mount a claim whose data the backup takes are hooked. A pod's pre and
//! post hooks are planned together: if either's annotations cannot be read, neither runs (an
//! error), so nothing is frozen that would not be thawed; every planned post hook runs, whether
//! its pre hook succeeded or not. Commands run through the API server's `exec` (`pods/exec`),
//! as `kubectl exec` does; a command still running at its timeout is abandoned (the API cannot
//! kill it), and the hook fails. Unlike Velero, a failed `Fail` hook does not stop its pod's
//! volumes from being taken: the backup is PartiallyFailed, naming the pod.

use std::collections::{BTreeMap, BTreeSet};
use std::time::Duration;

use futures::StreamExt;
use k8s_openapi::api::core::v1::Pod;
use kube::Client;
use kube::api::{Api, AttachParams};
use lifeboat_backup::duration::parse_duration;
use tokio::io::AsyncReadExt;

use crate::crd::ItemMessage;

/// The annotation domains read, Lifeboat's first.
const DOMAINS: [&str; 2] = ["hook.backup.lifeboat.dev", "hook.backup.velero.io"];
/// How long a hook may run when its pod says nothing.
pub const DEFAULT_TIMEOUT: Duration = Duration::from_secs(30);
/// Output kept from a failed hook, for its message.
const OUTPUT_SHOWN: usize = 512;
/// Hooks run at once (each in its own pod).
const HOOKS_AT_ONCE: usize = 8;

/// When a hook runs.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum HookPhase {
    /// Before the volumes are snapshotted.
    Pre,
    /// After.
    Post,
}

impl HookPhase {
    fn prefix(self) -> &'static str {
        match self {
            Self::Pre => "pre",
            Self::Post => "post",
        }
    }
}

/// What a failed hook does to the backup.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum OnError {
    /// An error: the backup is PartiallyFailed (the volumes are still taken).
    Fail,
    /// A warning.
    Continue,
}

/// One command to run in one pod.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Hook {
    /// The pod's namespace.
    pub namespace: String,
    /// The pod.
    pub pod: String,
    /// The container.
    pub container: String,
    /// The command and its arguments.
    pub command: Vec<String>,
    /// How long it may run.
    pub timeout: Duration,
    /// What a failure does.
    pub on_error: OnError,
}

impl Hook {
    /// `pods/<namespace>/<pod>`, as items are named.
    pub fn item(&self) -> String {
        format!("pods/{}/{}", self.namespace, self.pod)
    }
}

/// One pod's hooks.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct PodHooks {
    /// Run before the snapshots.
    pub pre: Option<Hook>,
    /// Run after them.
    pub post: Option<Hook>,
}

/// The hooks of the running pods among `pods` that mount one of `claims` (namespace, claim),
/// and an error for each pod whose annotations cannot be read (none of its hooks run).
pub fn plan_hooks(pods: &[Pod], claims: &BTreeSet<(String, String)>) -> (Vec<PodHooks>, Vec<ItemMessage>) {
    let (mut hooks, mut errors) = (Vec::new(), Vec::new());
    for pod in pods {
        let (Some(ns), Some(name)) = (&pod.metadata.namespace, &pod.metadata.name) else {
            continue;
        };
        let running = pod.status.as_ref().and_then(|s| s.phase.as_deref()) == Some("Running");
        let spec = pod.spec.as_ref();
        let mounts_one = spec
            .and_then(|s| s.volumes.as_ref())
            .into_iter()
            .flatten()
            .filter_map(|v| v.persistent_volume_claim.as_ref())
            .any(|c| claims.contains(&(ns.clone(), c.claim_name.clone())));
        if !running || !mounts_one {
            continue;
        }
        let annotations = pod.metadata.annotations.clone().unwrap_or_default();
        let first = spec
            .and_then(|s| s.containers.first())
            .map(|c| c.name.clone())
            .unwrap_or_default();
        let containers: Vec<&str> = spec
            .map(|s| s.containers.iter().map(|c| c.name.as_str()).collect())
            .unwrap_or_default();
        let hook = |phase: HookPhase| -> Result<Option<Hook>, String> {
            let Some((container, command, timeout, on_error)) = hook_of(&annotations, phase, first.clone())?
            else {
                return Ok(None);
            };
            if !containers.contains(&container.as_str()) {
                return Err(format!(
                    "the {} hook's container {container:?} is not one of the pod's ({})",
                    phase.prefix(),
                    containers.join(", ")
                ));
            }
            Ok(Some(Hook {
                namespace: ns.clone(),
                pod: name.clone(),
                container,
                command,
                timeout,
                on_error,
            }))
        };
        match (hook(HookPhase::Pre), hook(HookPhase::Post)) {
            (Ok(None), Ok(None)) => {}
            (Ok(pre), Ok(post)) => hooks.push(PodHooks { pre, post }),
            (Err(why), _) | (_, Err(why)) => errors.push(ItemMessage {
                item: format!("pods/{ns}/{name}"),
                message: format!("hooks not run (neither pre nor post): {why}"),
            }),
        }
    }
    (hooks, errors)
}

type Parsed = (String, Vec<String>, Duration, OnError);

/// The hook one pod's annotations describe for `phase`, in the first domain that names a command.
fn hook_of(
    annotations: &BTreeMap<String, String>,
    phase: HookPhase,
    first_container: String,
) -> Result<Option<Parsed>, String> {
    for domain in DOMAINS {
        let key = |what: &str| format!("{}.{domain}/{what}", phase.prefix());
        let get = |what: &str| annotations.get(&key(what)).map(|v| v.trim());
        let Some(command) = get("command") else {
            continue;
        };
        let command: Vec<String> = if command.starts_with('[') {
            serde_json::from_str(command)
                .map_err(|e| format!("{} is not a JSON array of strings: {e}", key("command")))?
        } else {
            vec![command.to_string()]
        };
        if command.is_empty() || command[0].is_empty() {
            return Err(format!("{} names no command", key("command")));
        }
        let timeout = match get("timeout") {
            Some(t) => parse_duration(t)
                .ok()
                .and_then(|d| d.to_std().ok())
                .ok_or_else(|| format!("{} {t:?} is not a duration (`30s`, `2m`)", key("timeout")))?,
            None => DEFAULT_TIMEOUT,
        };
        let on_error = match get("on-error") {
            None | Some("Fail") => OnError::Fail,
            Some("Continue") => OnError::Continue,
            Some(other) => {
                return Err(format!("{} {other:?} is not Fail or Continue", key("on-error")));
            }
        };
        let container = get("container").map_or(first_container, str::to_string);
        return Ok(Some((container, command, timeout, on_error)));
    }
    Ok(None)
}

/// What running hooks gave: failures by their `on-error` (errors, warnings).
#[derive(Debug, Clone, Default)]
pub struct HookOutcome {
    /// Failures of `Fail` hooks.
    pub errors: Vec<ItemMessage>,
    /// Failures of `Continue` hooks.
    pub warnings: Vec<ItemMessage>,
}

/// Runs the `phase` hooks of `hooks` ([`HOOKS_AT_ONCE`] at once), each until it exits or its
/// timeout.
pub async fn run_hooks(client: &Client, hooks: &[PodHooks], phase: HookPhase) -> HookOutcome {
    let of_phase = hooks.iter().filter_map(|h| match phase {
        HookPhase::Pre => h.pre.as_ref(),
        HookPhase::Post => h.post.as_ref(),
    });
    let results: Vec<(&Hook, Result<(), String>)> = futures::stream::iter(of_phase)
        .map(|hook| async move { (hook, run_one(client, hook).await) })
        .buffer_unordered(HOOKS_AT_ONCE)
        .collect()
        .await;
    let mut out = HookOutcome::default();
    for (hook, result) in results {
        let Err(why) = result else {
            continue;
        };
        let message = ItemMessage {
            item: hook.item(),
            message: format!(
                "{} hook {:?} in container {}: {why}",
                phase.prefix(),
                hook.command.join(" "),
                hook.container
            ),
        };
        match hook.on_error {
            OnError::Fail => out.errors.push(message),
            OnError::Continue => out.warnings.push(message),
        }
    }
    out
}

async fn run_one(client: &Client, hook: &Hook) -> Result<(), String> {
    let api: Api<Pod> = Api::namespaced(client.clone(), &hook.namespace);
    let params = AttachParams::default()
        .container(hook.container.clone())
        .stdin(false)
        .stdout(true)
        .stderr(true);
    let run = async {
        let mut process = api
            .exec(&hook.pod, hook.command.clone(), &params)
            .await
            .map_err(|e| format!("exec failed: {e}"))?;
        let status = process.take_status();
        let (mut stdout, mut stderr) = (process.stdout(), process.stderr());
        let (mut out, mut err) = (Vec::new(), Vec::new());
        tokio::join!(tail(stdout.as_mut(), &mut out), tail(stderr.as_mut(), &mut err));
        let status = match status {
            Some(s) => s.await,
            None => None,
        };
        let _ = process.join().await;
        match status {
            Some(s) if s.status.as_deref() == Some("Success") => Ok(()),
            Some(s) => Err(format!(
                "{}{}",
                s.message.unwrap_or_else(|| "it failed".to_string()),
                shown(&err, &out)
            )),
            None => Err(format!("it ended without an exit status{}", shown(&err, &out))),
        }
    };
    match tokio::time::timeout(hook.timeout, run).await {
        Ok(result) => result,
        Err(_) => Err(format!("it did not finish within {:?}", hook.timeout)),
    }
}

/// Reads `stream` to its end, keeping only its last [`OUTPUT_SHOWN`] bytes in `kept`.
async fn tail(stream: Option<&mut (impl tokio::io::AsyncRead + Unpin)>, kept: &mut Vec<u8>) {
    let Some(stream) = stream else {
        return;
    };
    let mut buf = [0u8; 4096];
    while let Ok(n) = stream.read(&mut buf).await {
        if n == 0 {
            break;
        }
        kept.extend_from_slice(&buf[..n]);
        if kept.len() > OUTPUT_SHOWN {
            kept.drain(..kept.len() - OUTPUT_SHOWN);
        }
    }
}

/// The end of a failed hook's output (stderr, else stdout), for its message.
fn shown(stderr: &[u8], stdout: &[u8]) -> String {
    let text = if stderr.is_empty() { stdout } else { stderr };
    let text = String::from_utf8_lossy(&text[text.len().saturating_sub(OUTPUT_SHOWN)..]);
    let text = text.trim();
    if text.is_empty() {
        String::new()
    } else {
        format!("; output: {text}")
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]

    use serde_json::json;

    use super::*;

    fn pod(name: &str, phase: &str, claim: &str, annotations: serde_json::Value) -> Pod {
        serde_json::from_value(json!({
            "metadata": {"namespace": "shop", "name": name, "annotations": annotations},
            "spec": {
                "containers": [{"name": "db"}, {"name": "sidecar"}],
                "volumes": [{"name": "data", "persistentVolumeClaim": {"claimName": claim}}],
            },
            "status": {"phase": phase},
        }))
        .unwrap()
    }

    #[test]
    fn velero_and_lifeboat_annotations_plan_hooks_for_pods_of_the_claims() {
        let claims = BTreeSet::from([("shop".to_string(), "data".to_string())]);
        let pods = [
            // Velero's annotations, as pods annotated for Velero carry them.
            pod(
                "db-0",
                "Running",
                "data",
                json!({
                    "pre.hook.backup.velero.io/command": "[\"/sbin/fsfreeze\", \"--freeze\", \"/var/lib/db\"]",
                    "pre.hook.backup.velero.io/timeout": "2m",
                    "post.hook.backup.velero.io/command": "[\"/sbin/fsfreeze\", \"--unfreeze\", \"/var/lib/db\"]",
                }),
            ),
            // Lifeboat's win over Velero's on the same pod; one word is a command.
            pod(
                "db-1",
                "Running",
                "data",
                json!({
                    "pre.hook.backup.lifeboat.dev/command": "/flush.sh",
                    "pre.hook.backup.lifeboat.dev/container": "sidecar",
                    "pre.hook.backup.lifeboat.dev/on-error": "Continue",
                    "pre.hook.backup.velero.io/command": "[\"ignored\"]",
                }),
            ),
            // Not running, or not mounting a claim taken: no hook.
            pod(
                "db-2",
                "Pending",
                "data",
                json!({"pre.hook.backup.velero.io/command": "x"}),
            ),
            pod(
                "web-0",
                "Running",
                "other",
                json!({"pre.hook.backup.velero.io/command": "x"}),
            ),
            // Unreadable: an error naming the annotation, no hook.
            pod(
                "db-3",
                "Running",
                "data",
                json!({"pre.hook.backup.velero.io/command": "[not json", "post.hook.backup.velero.io/on-error": "Maybe",
                       "post.hook.backup.velero.io/command": "x"}),
            ),
        ];
        let (planned, errors) = plan_hooks(&pods, &claims);
        let pre: Vec<Hook> = planned.iter().filter_map(|h| h.pre.clone()).collect();
        assert_eq!(
            pre,
            vec![
                Hook {
                    namespace: "shop".into(),
                    pod: "db-0".into(),
                    container: "db".into(),
                    command: vec!["/sbin/fsfreeze".into(), "--freeze".into(), "/var/lib/db".into()],
                    timeout: Duration::from_secs(120),
                    on_error: OnError::Fail,
                },
                Hook {
                    namespace: "shop".into(),
                    pod: "db-1".into(),
                    container: "sidecar".into(),
                    command: vec!["/flush.sh".into()],
                    timeout: DEFAULT_TIMEOUT,
                    on_error: OnError::Continue,
                },
            ]
        );
        // db-3's pre and post are both unreadable: one error, neither runs.
        assert_eq!(errors.len(), 1, "{errors:?}");
        assert_eq!(errors[0].item, "pods/shop/db-3");
        assert!(
            errors[0].message.contains("pre.hook.backup.velero.io/command"),
            "{errors:?}"
        );
        let post: Vec<Hook> = planned.iter().filter_map(|h| h.post.clone()).collect();
        assert_eq!(post.len(), 1);
        assert_eq!(post[0].command[1], "--unfreeze");
        // A good pre hook with an unreadable post one: nothing runs (never frozen, never thawed).
        let half = pod(
            "db-4",
            "Running",
            "data",
            json!({"pre.hook.backup.velero.io/command": "[\"/sbin/fsfreeze\", \"--freeze\", \"/d\"]",
                   "post.hook.backup.velero.io/command": "[\"/sbin/fsfreeze\", \"--unfreeze\", \"/d\"]",
                   "post.hook.backup.velero.io/timeout": "soon"}),
        );
        let (planned, errors) = plan_hooks(&[half], &claims);
        assert!(planned.is_empty(), "{planned:?}");
        assert!(
            errors[0].message.contains("post.hook.backup.velero.io/timeout"),
            "{errors:?}"
        );
        // A container the pod does not have: an error naming the pod's, nothing runs.
        let misnamed = pod(
            "db-5",
            "Running",
            "data",
            json!({"pre.hook.backup.lifeboat.dev/command": "/flush.sh",
                   "pre.hook.backup.lifeboat.dev/container": "dbb"}),
        );
        let (planned, errors) = plan_hooks(&[misnamed], &claims);
        assert!(planned.is_empty(), "{planned:?}");
        assert!(
            errors[0]
                .message
                .contains("\"dbb\" is not one of the pod's (db, sidecar)"),
            "{errors:?}"
        );
    }

    #[test]
    fn a_failed_hooks_output_is_shown_in_short() {
        assert_eq!(shown(b"", b""), "");
        assert_eq!(shown(b"frozen already\n", b"ignored"), "; output: frozen already");
        let long = vec![b'x'; 2000];
        assert_eq!(shown(&long, b"").len(), "; output: ".len() + OUTPUT_SHOWN);
    }
}
