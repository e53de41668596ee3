//! Clusters that are hosts of their own, for the federation's end-to-end tests: each
//! Kubernetes API test server runs as a child process (`kube-testserver`) inside its own
//! network namespace, reached from the test's (the "laptop's") namespace through a veth pair
//! on a private /30 (`10.231.x.y`), and optionally from another cluster's namespace through a
//! direct link. Cutting a cluster's links partitions it; only addresses inside namespaces the
//! test made ever carry traffic. The parts of a cluster the API test server does not run (the
//! kubelet's Ready node, the Deployment controller's status) are `lifeboat_tests::players`.
#![allow(clippy::unwrap_used, dead_code)] // test support: a setup that fails should panic loudly

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::time::{Duration, Instant};

use k8s_openapi::api::core::v1::Namespace;
use kube::Api;
#[allow(unused_imports)] // each test binary uses some
pub use lifeboat_tests::players::{
    application, config_map, play_deployment_controller, play_volume_binder, ready_node, web_deployment,
};
use serde_json::Value;

/// Why partition tests cannot run here (`None`: they can): they need root and iproute2's
/// `ip netns`.
pub fn cannot_partition() -> Option<String> {
    if !rustix::process::geteuid().is_root() {
        return Some("not root: network namespaces need CAP_NET_ADMIN (CI runs as root)".into());
    }
    match Command::new("ip").args(["netns", "list"]).output() {
        Ok(o) if o.status.success() => None,
        Ok(o) => Some(format!(
            "`ip netns list` failed: {}",
            String::from_utf8_lossy(&o.stderr).trim()
        )),
        Err(e) => Some(format!("no `ip` (iproute2): {e}")),
    }
}

fn ip(args: &[&str]) {
    let out = Command::new("ip").args(args).output().unwrap();
    assert!(
        out.status.success(),
        "ip {}: {}",
        args.join(" "),
        String::from_utf8_lossy(&out.stderr)
    );
}

/// One end of a link: the interface inside a namespace and its address.
#[derive(Debug, Clone)]
pub struct End {
    pub netns: String,
    pub interface: String,
    pub address: String,
}

/// The test's network namespaces and links; dropping it deletes them (and so every veth).
pub struct Net {
    tag: String,
    base: u32,
    next: u32,
    namespaces: Vec<String>,
}

impl Net {
    /// A fresh set of names and subnets, unique to this process (two per process, for tests
    /// that run side by side).
    pub fn new() -> Self {
        static MADE: std::sync::atomic::AtomicU32 = std::sync::atomic::AtomicU32::new(0);
        let n = MADE.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        assert!(n < 2, "at most two sets of namespaces per test binary");
        let pid = std::process::id();
        Self {
            tag: format!("lb{}{n}", pid % 10_000),
            // 20 /24s per set, inside 10.231.0.0/16.
            base: (pid % 6) * 40 + n * 20,
            next: 0,
            namespaces: Vec::new(),
        }
    }

    /// Makes namespace `name` (its loopback up).
    pub fn namespace(&mut self, name: &str) -> String {
        let ns = format!("{}-{name}", self.tag);
        ip(&["netns", "add", &ns]);
        self.namespaces.push(ns.clone());
        ip(&["-n", &ns, "link", "set", "lo", "up"]);
        ns
    }

    fn subnet(&mut self) -> (String, String, String, String) {
        let third = self.base + self.next;
        assert!(third < 256 && self.next < 20, "too many links");
        let n = self.next;
        self.next += 1;
        (
            format!("10.231.{third}.1"),
            format!("10.231.{third}.2"),
            format!("{}x{n}a", self.tag),
            format!("{}x{n}b", self.tag),
        )
    }

    /// A veth pair from the test's own namespace to `to`: returns (host end, `to`'s end).
    pub fn link_from_host(&mut self, to: &str) -> (End, End) {
        let (a_ip, b_ip, a, b) = self.subnet();
        ip(&["link", "add", &a, "type", "veth", "peer", "name", &b, "netns", to]);
        ip(&["addr", "add", &format!("{a_ip}/30"), "dev", &a]);
        ip(&["link", "set", &a, "up"]);
        ip(&["-n", to, "addr", "add", &format!("{b_ip}/30"), "dev", &b]);
        ip(&["-n", to, "link", "set", &b, "up"]);
        (
            End {
                netns: String::new(),
                interface: a,
                address: a_ip,
            },
            End {
                netns: to.to_string(),
                interface: b,
                address: b_ip,
            },
        )
    }

    /// A veth pair between two of the test's namespaces: returns (`from`'s end, `to`'s end).
    pub fn link(&mut self, from: &str, to: &str) -> (End, End) {
        let (a_ip, b_ip, a, b) = self.subnet();
        ip(&[
            "-n", from, "link", "add", &a, "type", "veth", "peer", "name", &b, "netns", to,
        ]);
        ip(&["-n", from, "addr", "add", &format!("{a_ip}/30"), "dev", &a]);
        ip(&["-n", from, "link", "set", &a, "up"]);
        ip(&["-n", to, "addr", "add", &format!("{b_ip}/30"), "dev", &b]);
        ip(&["-n", to, "link", "set", &b, "up"]);
        (
            End {
                netns: from.to_string(),
                interface: a,
                address: a_ip,
            },
            End {
                netns: to.to_string(),
                interface: b,
                address: b_ip,
            },
        )
    }
}

impl Drop for Net {
    fn drop(&mut self) {
        for ns in &self.namespaces {
            let _ = Command::new("ip").args(["netns", "del", ns]).status();
        }
    }
}

/// Sets an interface down (`up == false`: the cable is cut) or up again.
pub fn set_link(end: &End, up: bool) {
    let state = if up { "up" } else { "down" };
    if end.netns.is_empty() {
        ip(&["link", "set", &end.interface, state]);
    } else {
        ip(&["-n", &end.netns, "link", "set", &end.interface, state]);
    }
}

/// The path of a binary of this workspace, built beside the test (by `cargo test --workspace`
/// or `cargo build -p lifeboat-tests --bin kube-testserver`).
pub fn workspace_bin(name: &str) -> PathBuf {
    let path = assert_cmd::cargo::cargo_bin(name);
    assert!(
        path.is_file(),
        "{} is not built: run `cargo build -p lifeboat-tests --bin {name}` (or `cargo test --workspace`)",
        path.display()
    );
    path
}

/// A Kubernetes API test server running inside a network namespace.
pub struct HostCluster {
    pub name: String,
    pub netns: String,
    /// The address the test reaches it at.
    pub address: String,
    /// A kubeconfig reaching it from the test's namespace.
    pub kubeconfig: PathBuf,
    pub client: kube::Client,
    child: Child,
}

impl HostCluster {
    /// Starts `kube-testserver` in `netns`, serving on every address there, its certificate
    /// naming `addresses` (the first is the one in the kubeconfig).
    pub async fn start(name: &str, netns: &str, addresses: &[&str], dir: &Path) -> Self {
        let kubeconfig = dir.join(format!("{name}.kubeconfig"));
        let log = std::fs::File::create(dir.join(format!("{name}.server.log"))).unwrap();
        let child = Command::new("ip")
            .args(["netns", "exec", netns])
            .arg(workspace_bin("kube-testserver"))
            .arg("--secure-port=6443")
            .arg("--bind-address=0.0.0.0")
            .arg(format!("--tls-san={}", addresses.join(",")))
            .arg(format!("--advertise-address={}", addresses[0]))
            .arg(format!("--write-kubeconfig={}", kubeconfig.display()))
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(log)
            .spawn()
            .unwrap();
        let deadline = Instant::now() + Duration::from_secs(30);
        while !kubeconfig.is_file() {
            assert!(Instant::now() < deadline, "{name}: no kubeconfig after 30 s");
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        let client = lifeboat_tests::kube::kubeconfig::client(&kubeconfig)
            .await
            .unwrap();
        let api: Api<Namespace> = Api::all(client.clone());
        while api.list(&Default::default()).await.is_err() {
            assert!(Instant::now() < deadline, "{name}: the API does not answer");
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        Self {
            name: name.to_string(),
            netns: netns.to_string(),
            address: addresses[0].to_string(),
            kubeconfig,
            client,
            child,
        }
    }

    /// A copy of its kubeconfig that reaches it at `address` instead (from another
    /// cluster's namespace).
    pub fn kubeconfig_via(&self, address: &str, dir: &Path) -> PathBuf {
        let text = std::fs::read_to_string(&self.kubeconfig).unwrap();
        let path = dir.join(format!("{}-via-{address}.kubeconfig", self.name));
        std::fs::write(&path, text.replace(&self.address, address)).unwrap();
        path
    }
}

impl Drop for HostCluster {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// drctl with the test's repository key and nothing from the user's environment.
pub struct Drctl {
    pub identity: PathBuf,
    pub home: PathBuf,
    /// More environment (the repository's endpoint and credentials).
    pub env: Vec<(String, String)>,
}

impl Drctl {
    /// `drctl --quiet ARGS`, run in network namespace `netns` when given.
    pub async fn run(&self, netns: Option<&str>, args: &[&str]) -> Output {
        let mut c = match netns {
            Some(ns) => {
                let mut c = Command::new("ip");
                c.args(["netns", "exec", ns]).arg(workspace_bin("drctl"));
                c
            }
            None => Command::new(workspace_bin("drctl")),
        };
        c.env_remove("KUBECONFIG")
            .env_remove("DRCTL_REPO")
            .env("HOME", &self.home)
            .env("DRCTL_IDENTITY", &self.identity)
            .envs(self.env.iter().map(|(k, v)| (k, v)))
            .arg("--quiet")
            .args(args)
            .stdin(Stdio::null());
        tokio::task::spawn_blocking(move || c.output().unwrap())
            .await
            .unwrap()
    }
}

/// Exit code and both streams, for assertion messages.
pub fn text(o: &Output) -> String {
    format!(
        "exit {:?}\nstdout: {}\nstderr: {}",
        o.status.code(),
        String::from_utf8_lossy(&o.stdout),
        String::from_utf8_lossy(&o.stderr)
    )
}

/// stdout as JSON.
pub fn json_of(o: &Output) -> Value {
    serde_json::from_slice(&o.stdout).unwrap_or_else(|e| panic!("{e}: {}", text(o)))
}

/// Polls `check` every 200 ms until it returns `Some`, for at most `secs`.
pub async fn eventually<T, F, Fut>(what: &str, secs: u64, mut check: F) -> T
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = Option<T>>,
{
    let deadline = Instant::now() + Duration::from_secs(secs);
    loop {
        if let Some(v) = check().await {
            return v;
        }
        assert!(
            Instant::now() < deadline,
            "timed out after {secs} s waiting for {what}"
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

/// The run's step timeline as `(step, state, seconds)` rows, printed for the report.
pub fn timeline(run: &Value) -> Vec<(String, String, f64)> {
    let mut out = Vec::new();
    for s in run["steps"].as_array().into_iter().flatten() {
        let step = match &s["step"] {
            Value::String(x) => x.clone(),
            v => v["step"]
                .as_str()
                .map(String::from)
                .unwrap_or_else(|| v.to_string()),
        };
        let secs = match (s["started"].as_str(), s["finished"].as_str()) {
            (Some(a), Some(b)) => {
                let a = chrono::DateTime::parse_from_rfc3339(a).unwrap();
                let b = chrono::DateTime::parse_from_rfc3339(b).unwrap();
                (b - a).num_milliseconds() as f64 / 1000.0
            }
            _ => 0.0,
        };
        out.push((step, s["state"].to_string(), secs));
    }
    out
}

/// A run's RPO (age, at the run's start, of the recovery point it restored; 0 for a planned
/// run's final backup, taken after the start with the source quiesced) and RTO (run start →
/// every readiness gate passed), in seconds, from its record.
pub fn rpo_rto(run: &Value) -> (f64, f64) {
    let time = |v: &Value| {
        chrono::DateTime::parse_from_rfc3339(v.as_str().unwrap_or_else(|| panic!("no time: {v}"))).unwrap()
    };
    let step = |name: &str| {
        run["steps"]
            .as_array()
            .unwrap()
            .iter()
            .find(|s| s["step"].to_string().contains(name))
            .unwrap_or_else(|| panic!("no {name} step: {run}"))
    };
    let started = time(&run["started"]);
    let point = time(&step("restoreObjects")["output"]["time"]);
    let ready = time(&step("waitReady")["finished"]);
    let secs = |d: chrono::TimeDelta| d.num_milliseconds() as f64 / 1000.0;
    (secs(started - point).max(0.0), secs(ready - started))
}

/// Debian's `chromium` (or another Chromium on PATH), or why there is none.
pub fn chromium() -> Result<PathBuf, String> {
    let path = std::env::var_os("PATH").unwrap_or_default();
    for name in ["chromium", "chromium-browser", "google-chrome"] {
        for dir in std::env::split_paths(&path) {
            let p = dir.join(name);
            if p.is_file() {
                return Ok(p);
            }
        }
    }
    Err("no chromium on PATH (`apt-get install chromium`; scripts/install-deps.sh installs it)".into())
}

/// Opens `page` (a local file) in headless Chromium with every host name unresolvable (a
/// self-contained page needs none, and nothing may leave the machine): returns the DOM as
/// Chromium built it, and saves a `width`×`height` screenshot at `png`.
pub fn headless(chromium: &Path, page: &Path, png: &Path, (width, height): (u32, u32)) -> String {
    let profile = tempfile::tempdir().unwrap();
    let url = format!("file://{}", page.display());
    let run = |extra: &[String]| {
        let out = Command::new(chromium)
            .args([
                "--headless",
                "--no-sandbox",
                "--disable-gpu",
                "--no-first-run",
                "--disable-extensions",
                "--disable-sync",
                "--disable-background-networking",
                "--disable-component-update",
                "--host-resolver-rules=MAP * ~NOTFOUND",
                "--hide-scrollbars",
            ])
            .arg(format!("--user-data-dir={}", profile.path().display()))
            .args(extra)
            .arg(&url)
            .stdin(Stdio::null())
            .output()
            .unwrap();
        assert!(out.status.success(), "chromium {extra:?}: {}", text(&out));
        out
    };
    let dom = run(&["--dump-dom".to_string()]);
    run(&[
        format!("--screenshot={}", png.display()),
        format!("--window-size={width},{height}"),
    ]);
    String::from_utf8(dom.stdout).unwrap()
}

/// A PNG's width and height, from its IHDR chunk (the PNG specification, section 11.2.2).
pub fn png_size(bytes: &[u8]) -> (u32, u32) {
    assert!(
        bytes.len() > 24 && bytes.starts_with(b"\x89PNG\r\n\x1a\n") && &bytes[12..16] == b"IHDR",
        "not a PNG"
    );
    let be = |b: &[u8]| u32::from_be_bytes([b[0], b[1], b[2], b[3]]);
    (be(&bytes[16..20]), be(&bytes[20..24]))
}

impl Drctl {
    /// `drctl --kubeconfig K cluster add NAME --role ROLE EXTRA…`, which must succeed.
    pub async fn register(&self, name: &str, kubeconfig: &Path, role: &str, extra: &[&str]) {
        let k = kubeconfig.to_str().unwrap();
        let mut args = vec!["--kubeconfig", k, "cluster", "add", name, "--role", role];
        args.extend_from_slice(extra);
        let added = self.run(None, &args).await;
        assert!(added.status.success(), "{}", text(&added));
    }

    /// `drctl --kubeconfig K backup create NAME --include-namespaces NS EXTRA…`, which must
    /// succeed.
    pub async fn backup(&self, kubeconfig: &Path, name: &str, namespace: &str, extra: &[&str]) {
        let k = kubeconfig.to_str().unwrap();
        let mut args = vec![
            "--kubeconfig",
            k,
            "backup",
            "create",
            name,
            "--include-namespaces",
            namespace,
        ];
        args.extend_from_slice(extra);
        let b = self.run(None, &args).await;
        assert!(b.status.success(), "{}", text(&b));
    }
}
