//! Looking for secrets in what a test captured: logs, Events, statuses, metrics, errors and
//! command output. A secret is searched for in every form a program could print it in by
//! mistake: as is, base64 (alone, and as a piece of a larger base64 text such as a Secret's
//! `data` or a kubeconfig's `client-key-data`, in the standard and URL-safe alphabets), the
//! bytes as Rust's `Debug` prints a `Vec<u8>` or `ByteString` (`104, 117, …`), hex, and
//! percent-encoded.

use std::fmt::Write as _;

/// A secret value a test used, and what it is (for the report; never the value).
#[derive(Clone)]
pub struct SecretValue {
    /// What it is: "age identity", "S3 secret key", "cephx key", ….
    pub kind: String,
    value: String,
}

impl SecretValue {
    /// A secret of `kind`.
    pub fn new(kind: impl Into<String>, value: impl Into<String>) -> Self {
        Self {
            kind: kind.into(),
            value: value.into(),
        }
    }

    /// The forms it is searched for in, each with its name; forms shorter than 12 characters
    /// are left out (they would match by chance).
    pub fn needles(&self) -> Vec<(&'static str, String)> {
        let v = self.value.as_bytes();
        let mut out = vec![("raw", self.value.clone())];
        for (alphabet, name_whole, name_piece) in [
            (STANDARD, "base64", "base64 (inside a larger value)"),
            (URL_SAFE, "base64url", "base64url (inside a larger value)"),
        ] {
            out.push((name_whole, encode(v, alphabet, true)));
            for shift in 0..3 {
                out.push((name_piece, base64_piece(v, shift, alphabet)));
            }
        }
        let decimal: Vec<String> = v.iter().map(u8::to_string).collect();
        out.push(("Debug bytes", decimal.join(", ")));
        let mut hex = String::new();
        for b in v {
            let _ = write!(hex, "{b:02x}");
        }
        out.push(("hex", hex));
        let mut percent = String::new();
        for &b in v {
            if b.is_ascii_alphanumeric() || b"-._~".contains(&b) {
                percent.push(char::from(b));
            } else {
                let _ = write!(percent, "%{b:02X}");
            }
        }
        out.push(("percent-encoded", percent));
        out.retain(|(_, n)| n.len() >= 12);
        out.sort_by(|a, b| a.1.cmp(&b.1));
        out.dedup_by(|a, b| a.1 == b.1);
        out
    }
}

/// Text captured from one source: a process's stderr, the in-process log, the Events of a
/// cluster, a CR's JSON, the metrics page.
pub struct Capture {
    /// Where it came from, for the report.
    pub source: String,
    /// Everything it held.
    pub text: String,
}

impl Capture {
    /// A capture of `text` from `source`.
    pub fn new(source: impl Into<String>, text: impl Into<String>) -> Self {
        Self {
            source: source.into(),
            text: text.into(),
        }
    }
}

/// One place a secret was found.
#[derive(Debug)]
pub struct Hit {
    /// The capture's source.
    pub source: String,
    /// 1-based line number in the capture.
    pub line: usize,
    /// The secret's kind.
    pub kind: String,
    /// The form it was found in.
    pub form: &'static str,
    /// The line, the secret replaced by `<SECRET>` and cut to 400 characters.
    pub text: String,
}

impl std::fmt::Display for Hit {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "{} line {}: {} ({}): {}",
            self.source, self.line, self.kind, self.form, self.text
        )
    }
}

/// What a scan looked at and found.
pub struct Report {
    /// Every hit.
    pub hits: Vec<Hit>,
    /// Lines scanned over all captures.
    pub lines: usize,
    /// Bytes scanned over all captures.
    pub bytes: usize,
    /// Forms searched for over all secrets.
    pub needles: usize,
}

impl Report {
    /// A one-line tally for the test's output.
    pub fn summary(&self, captures: usize, secrets: usize) -> String {
        format!(
            "{captures} captures, {} lines ({} bytes) scanned for {secrets} secrets in {} forms: {} hits",
            self.lines,
            self.bytes,
            self.needles,
            self.hits.len()
        )
    }

    /// Fails the test when a secret was found, listing the first 60 hits; `what` names the
    /// campaign.
    pub fn assert_clean(&self, what: &str) {
        let hits: Vec<String> = self.hits.iter().take(60).map(ToString::to_string).collect();
        assert!(
            self.hits.is_empty(),
            "{what}: {} secret(s) shown:\n{}",
            self.hits.len(),
            hits.join("\n")
        );
    }
}

/// Searches every capture for every form of every secret.
pub fn scan(captures: &[Capture], secrets: &[SecretValue]) -> Report {
    let needles: Vec<(&SecretValue, &'static str, String)> = secrets
        .iter()
        .flat_map(|s| s.needles().into_iter().map(move |(form, n)| (s, form, n)))
        .collect();
    let mut report = Report {
        hits: Vec::new(),
        lines: 0,
        bytes: 0,
        needles: needles.len(),
    };
    for c in captures {
        report.bytes += c.text.len();
        for (i, line) in c.text.lines().enumerate() {
            report.lines += 1;
            for (secret, form, needle) in &needles {
                if line.contains(needle.as_str()) {
                    let text: String = line
                        .replace(needle.as_str(), "<SECRET>")
                        .chars()
                        .take(400)
                        .collect();
                    report.hits.push(Hit {
                        source: c.source.clone(),
                        line: i + 1,
                        kind: secret.kind.clone(),
                        form,
                        text,
                    });
                }
            }
        }
    }
    report
}

/// Writes to `to` a copy of the kubeconfig at `from` whose user carries `token` and a fresh
/// client certificate and key (made with `openssl`; the test servers accept any credentials);
/// returns the secrets it holds: the token and the private key (the key's PEM body, whole
/// and line by line, and the PEM text that `client-key-data` encodes).
pub fn kubeconfig_with_credentials(
    from: &std::path::Path,
    to: &std::path::Path,
    token: &str,
) -> Result<Vec<SecretValue>, crate::HarnessError> {
    let io = |what: &str, e: std::io::Error| crate::HarnessError::io(what, e);
    let dir = to.parent().unwrap_or(std::path::Path::new("."));
    let (key, cert) = (to.with_extension("key.pem"), to.with_extension("cert.pem"));
    crate::process::run(
        "openssl req",
        std::process::Command::new("openssl")
            .args([
                "req",
                "-x509",
                "-newkey",
                "ec",
                "-pkeyopt",
                "ec_paramgen_curve:prime256v1",
                "-nodes",
            ])
            .arg("-keyout")
            .arg(&key)
            .arg("-out")
            .arg(&cert)
            .args(["-subj", "/CN=lifeboat-secret-scan", "-days", "2"])
            .current_dir(dir),
    )?;
    let key_pem = std::fs::read_to_string(&key).map_err(|e| io("read client key", e))?;
    let cert_pem = std::fs::read_to_string(&cert).map_err(|e| io("read client certificate", e))?;
    let text = std::fs::read_to_string(from).map_err(|e| io("read kubeconfig", e))?;
    let bad = |e: String| crate::HarnessError::Io {
        what: format!("kubeconfig {}", from.display()),
        message: e,
    };
    let mut doc: serde_json::Value = serde_yaml::from_str(&text).map_err(|e| bad(e.to_string()))?;
    let users = doc["users"]
        .as_array_mut()
        .ok_or_else(|| bad("no users".into()))?;
    for u in users {
        u["user"] = serde_json::json!({
            "token": token,
            "client-certificate-data": encode(cert_pem.as_bytes(), STANDARD, true),
            "client-key-data": encode(key_pem.as_bytes(), STANDARD, true),
        });
    }
    let out = serde_json::to_string_pretty(&doc).map_err(|e| bad(e.to_string()))?;
    std::fs::write(to, out).map_err(|e| io("write kubeconfig", e))?;
    let body: Vec<&str> = key_pem
        .lines()
        .filter(|l| !l.starts_with("-----") && !l.is_empty())
        .collect();
    let mut secrets = vec![
        SecretValue::new("kubeconfig bearer token", token),
        SecretValue::new("kubeconfig client key", body.concat()),
        SecretValue::new("kubeconfig client key (PEM)", key_pem.clone()),
    ];
    secrets.extend(
        body.iter()
            .map(|l| SecretValue::new("kubeconfig client key (a PEM line)", *l)),
    );
    Ok(secrets)
}

const STANDARD: &[u8; 64] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
const URL_SAFE: &[u8; 64] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_";

/// Base64 of `data` in `alphabet`, padded or not.
fn encode(data: &[u8], alphabet: &[u8; 64], pad: bool) -> String {
    let mut out = String::with_capacity(data.len().div_ceil(3) * 4);
    for chunk in data.chunks(3) {
        let b = [
            chunk[0],
            chunk.get(1).copied().unwrap_or(0),
            chunk.get(2).copied().unwrap_or(0),
        ];
        let n = (u32::from(b[0]) << 16) | (u32::from(b[1]) << 8) | u32::from(b[2]);
        let chars = chunk.len() + 1;
        for i in 0..4 {
            if i < chars {
                out.push(char::from(alphabet[((n >> (18 - 6 * i)) & 63) as usize]));
            } else if pad {
                out.push('=');
            }
        }
    }
    out
}

/// The characters of base64 text that depend on `data` alone when `data` sits `shift`
/// bytes (mod 3) into a larger encoded value: whatever surrounds it, they appear.
fn base64_piece(data: &[u8], shift: usize, alphabet: &[u8; 64]) -> String {
    let mut padded = vec![0u8; shift];
    padded.extend_from_slice(data);
    let encoded = encode(&padded, alphabet, false);
    let (first_bit, end_bit) = (8 * shift, 8 * (shift + data.len()));
    encoded
        .chars()
        .enumerate()
        .filter(|(i, _)| 6 * i >= first_bit && 6 * i + 6 <= end_bit)
        .map(|(_, c)| c)
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn base64_matches_the_standard_encoding() {
        assert_eq!(encode(b"hunter2", STANDARD, true), "aHVudGVyMg==");
        assert_eq!(
            encode(b"any carnal pleas", STANDARD, true),
            "YW55IGNhcm5hbCBwbGVhcw=="
        );
    }

    #[test]
    fn a_secret_inside_a_larger_base64_value_is_found_at_every_offset() {
        let secret = SecretValue::new("test", "S3cretValueThatMustNotLeak42");
        for prefix in ["", "a", "ab", "abc", "# comment line\n"] {
            let whole = format!("{prefix}S3cretValueThatMustNotLeak42\ntrailer");
            let text = encode(whole.as_bytes(), STANDARD, true);
            let report = scan(&[Capture::new("t", text)], std::slice::from_ref(&secret));
            assert!(!report.hits.is_empty(), "not found after {prefix:?}");
        }
        let debug = format!("{:?}", b"xxS3cretValueThatMustNotLeak42".to_vec());
        assert!(!scan(&[Capture::new("t", debug)], &[secret]).hits.is_empty());
    }
}
