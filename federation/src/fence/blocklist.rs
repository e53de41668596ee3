//! Cutting a fenced cluster's RBD clients off at Ceph: every node address of the cluster is
//! added to the OSD blocklist as `IP:0/0`, which Ceph matches against every client from that
//! address whatever its port and nonce, so a returning node cannot write to an image it still
//! has mapped. Done with the `ceph` CLI (`ceph-common`), as an operator would, so drctl does
//! not link librados; undone when the cluster gets the application back.

use std::path::Path;
use std::time::Duration;

use serde::{Deserialize, Serialize};
use tokio::process::Command;

/// How a cluster's Ceph is reached (from the machine that runs the failover).
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize, schemars::JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct CephAccess {
    /// Path of the `ceph.conf` (monitors, keyring) on the machine running drctl or the
    /// federation agent.
    pub conf: String,
    /// The cephx user (`admin`, or one with `mon 'allow command "osd blocklist"'`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub user: Option<String>,
}

/// Why the blocklist could not be changed.
#[derive(Debug, thiserror::Error)]
#[error("ceph ({conf}): {action}: {message}")]
pub struct BlocklistError {
    /// The ceph.conf used.
    pub conf: String,
    /// What was being done.
    pub action: String,
    /// What the CLI said.
    pub message: String,
}

/// How long a blocklist entry lives: a year (the default hour would let a partitioned
/// node back in while it is still partitioned); removed explicitly on failback.
const EXPIRE_SECONDS: u64 = 365 * 24 * 3600;

async fn ceph(access: &CephAccess, args: &[&str], action: &str) -> Result<String, BlocklistError> {
    let mut cmd = Command::new("ceph");
    cmd.arg("-c").arg(&access.conf).arg("--connect-timeout").arg("10");
    if let Some(u) = &access.user {
        cmd.arg("--id").arg(u);
    }
    cmd.args(args).kill_on_drop(true);
    let fail = |message: String| BlocklistError {
        conf: access.conf.clone(),
        action: action.to_string(),
        message,
    };
    if !Path::new(&access.conf).is_file() {
        return Err(fail("the file does not exist on this machine".to_string()));
    }
    let out = tokio::time::timeout(Duration::from_secs(30), cmd.output())
        .await
        .map_err(|_| fail("no answer within 30 s (is the cluster's Ceph reachable?)".to_string()))?
        .map_err(|e| fail(format!("cannot run `ceph` ({e}); install ceph-common")))?;
    if !out.status.success() {
        return Err(fail(String::from_utf8_lossy(&out.stderr).trim().to_string()));
    }
    Ok(String::from_utf8_lossy(&out.stdout).to_string())
}

/// The blocklist entry for every client from `ip`.
pub fn entry(ip: &str) -> String {
    format!("{ip}:0/0")
}

/// Whether Ceph answers (`ceph -s`).
pub async fn reachable(access: &CephAccess) -> Result<(), BlocklistError> {
    ceph(access, &["-s", "-f", "json"], "check status")
        .await
        .map(|_| ())
}

/// Blocklists every client from `addresses`. Returns the entries added.
pub async fn add(access: &CephAccess, addresses: &[String]) -> Result<Vec<String>, BlocklistError> {
    let expire = EXPIRE_SECONDS.to_string();
    let mut added = Vec::new();
    for ip in addresses {
        let e = entry(ip);
        ceph(
            access,
            &["osd", "blocklist", "add", &e, &expire],
            &format!("blocklist {e}"),
        )
        .await?;
        added.push(e);
    }
    Ok(added)
}

/// Removes the entries for `addresses` (absent entries are fine).
pub async fn remove(access: &CephAccess, addresses: &[String]) -> Result<Vec<String>, BlocklistError> {
    let listed = list(access).await?;
    let mut removed = Vec::new();
    for ip in addresses {
        let e = entry(ip);
        if !listed.contains(&e) {
            continue;
        }
        ceph(
            access,
            &["osd", "blocklist", "rm", &e],
            &format!("remove {e} from the blocklist"),
        )
        .await?;
        removed.push(e);
    }
    Ok(removed)
}

/// The current blocklist entries (`addr` only).
pub async fn list(access: &CephAccess) -> Result<Vec<String>, BlocklistError> {
    let out = ceph(
        access,
        &["osd", "blocklist", "ls", "-f", "json"],
        "list the blocklist",
    )
    .await?;
    let parsed: serde_json::Value = serde_json::from_str(out.trim()).unwrap_or(serde_json::Value::Null);
    Ok(parsed
        .as_array()
        .map(|a| {
            a.iter()
                .filter_map(|e| e["addr"].as_str().map(str::to_string))
                .collect()
        })
        .unwrap_or_default())
}
