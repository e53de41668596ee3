//! One shared Azurite (Microsoft's Azure Blob emulator) per test run, with a container per
//! test. Azurite speaks the real Blob REST API with the well-known development account.

use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::OnceLock;
use std::time::Duration;

use serde::{Deserialize, Serialize};

use crate::HarnessError;
use crate::process::{Daemon, free_port, port_open, run};
use crate::shared::{load_state, register, save_state, with_setup_lock};
use crate::unique_name;

/// The development account every Azurite accepts (public, documented by Microsoft).
pub const ACCOUNT: &str = "devstoreaccount1";
/// Its well-known key (public, documented by Microsoft).
pub const KEY: &str =
    "Eby8vdM02xNOcqFlqUwJPLlmEtlCDXJ1OUzFT50uSRZ6IFsuFq2UVErCz4I6tq/K1SZFPTOtr/KBHBeksoGMGw==";

/// The shared emulator.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Azurite {
    dir: PathBuf,
    port: u16,
    daemons: Vec<Daemon>,
}

static AZURITE: OnceLock<Result<Azurite, HarnessError>> = OnceLock::new();

/// The run's Azurite, started on first use.
pub fn azurite() -> Result<&'static Azurite, HarnessError> {
    AZURITE
        .get_or_init(|| with_setup_lock(|dir| Azurite::reuse_or_start(dir, &dir.join("azurite"))))
        .as_ref()
        .map_err(Clone::clone)
}

impl Azurite {
    fn reuse_or_start(state_root: &Path, dir: &Path) -> Result<Self, HarnessError> {
        let state_file = dir.join("state.json");
        if let Some(existing) = load_state::<Azurite>(&state_file)
            && existing.daemons.iter().all(Daemon::is_alive)
            && port_open(existing.port)
        {
            return Ok(existing);
        }
        if let Some(stale) = load_state::<Azurite>(&state_file) {
            stale.daemons.iter().for_each(Daemon::stop);
        }
        let _ = std::fs::remove_dir_all(dir);
        std::fs::create_dir_all(dir.join("data")).map_err(|e| HarnessError::io("create azurite dir", e))?;
        let port = free_port()?;
        let mut cmd = Command::new("azurite-blob");
        cmd.args([
            "--blobHost",
            "127.0.0.1",
            "--blobPort",
            &port.to_string(),
            "--skipApiVersionCheck",
            "--loose",
        ])
        .arg("--location")
        .arg(dir.join("data"))
        .arg("--debug")
        .arg(dir.join("debug.log"));
        let daemon = Daemon::spawn("azurite", cmd, &dir.join("azurite.log"))?;
        register(state_root, &daemon)?;
        daemon.wait_ready("listening", Duration::from_secs(60), || port_open(port))?;
        let azurite = Self {
            dir: dir.to_path_buf(),
            port,
            daemons: vec![daemon],
        };
        save_state(&state_file, &azurite)?;
        Ok(azurite)
    }

    /// The Blob endpoint, `http://127.0.0.1:PORT/devstoreaccount1`.
    pub fn endpoint(&self) -> String {
        format!("http://127.0.0.1:{}/{ACCOUNT}", self.port)
    }

    /// Environment variables `object_store`'s Azure client reads to reach this emulator.
    pub fn env(&self) -> Vec<(String, String)> {
        vec![
            ("AZURE_STORAGE_USE_EMULATOR".into(), "true".into()),
            (
                "AZURITE_BLOB_STORAGE_URL".into(),
                format!("http://127.0.0.1:{}", self.port),
            ),
            ("AZURE_STORAGE_ACCOUNT_NAME".into(), ACCOUNT.into()),
            ("AZURE_STORAGE_ACCOUNT_KEY".into(), KEY.into()),
        ]
    }

    /// Creates a fresh container for one test (through the Azure SDK for Python).
    pub fn new_container(&self, prefix: &str) -> Result<String, HarnessError> {
        let name = unique_name(prefix).to_lowercase();
        let conn = format!(
            "DefaultEndpointsProtocol=http;AccountName={ACCOUNT};AccountKey={KEY};BlobEndpoint={};",
            self.endpoint()
        );
        let script = "import sys\nfrom azure.storage.blob import BlobServiceClient\nBlobServiceClient.from_connection_string(sys.argv[1]).create_container(sys.argv[2])\n";
        run(
            "azurite",
            Command::new("python3").args(["-c", script, &conn, &name]),
        )?;
        Ok(name)
    }

    /// Where its logs are.
    pub fn log_dir(&self) -> &Path {
        &self.dir
    }
}
