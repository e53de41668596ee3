//! Secrets never leak: every drctl command a backup operator runs, with `RUST_LOG=trace`, on a
//! local repository, Ceph RGW (S3) and Azurite (Azure Blob), succeeding and failing — and no
//! byte of the age identity, the passphrase, the S3 secret key or the Azure account key (nor
//! a wrong secret given by mistake) appears in stdout or stderr, logs included.
//!
//! ```sh
//! cargo test -p drctl --test secrets_cli
//! ```
#![allow(clippy::unwrap_used)] // a test that cannot set up should panic loudly

use std::process::Command;

use lifeboat_tests::repos::{Backend, TestRepo};
use lifeboat_tests::secret_scan::{Capture, SecretValue, scan};

/// A wrong S3 secret or Azure key given by mistake: a secret too.
const WRONG_SECRET: &str = "Wr0ngSecretGivenByMistake9f3c1a7e";
const PASSPHRASE: &str = "correct horse battery staple 7d1e";
const WRONG_PASSPHRASE: &str = "incorrect pony battery staple 0b2f";

/// Everything one run printed, and whether it succeeded.
struct Run {
    what: String,
    ok: bool,
    text: String,
}

fn run(env: &[(String, String)], what: &str, args: &[&str]) -> Run {
    let out = Command::new(assert_cmd::cargo::cargo_bin("drctl"))
        .env_remove("DRCTL_PASSPHRASE_FILE")
        .envs(env.iter().map(|(k, v)| (k.as_str(), v.as_str())))
        .env("RUST_LOG", "trace")
        .env("NO_COLOR", "1")
        .args(args)
        .output()
        .unwrap();
    Run {
        what: what.to_string(),
        ok: out.status.success(),
        text: format!(
            "{}\n{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        ),
    }
}

/// The secrets a run against `repo` knows: the identity's secret key, the passphrases, and
/// the store's credentials.
fn secrets(repo: &TestRepo) -> Vec<String> {
    let identity = std::fs::read_to_string(&repo.identity).unwrap();
    let mut secrets: Vec<String> = identity
        .lines()
        .filter(|l| l.starts_with("AGE-SECRET-KEY-"))
        .map(str::to_string)
        .collect();
    assert_eq!(secrets.len(), 1, "the test identity holds one secret key");
    // The key's body alone, in case something prints it without its prefix or re-cased.
    secrets.push(secrets[0]["AGE-SECRET-KEY-1".len()..].to_string());
    secrets.push(secrets[0].to_lowercase());
    secrets.extend([PASSPHRASE, WRONG_PASSPHRASE, WRONG_SECRET].map(String::from));
    for (name, value) in repo.drctl_env() {
        if (name.contains("SECRET") || name.ends_with("ACCOUNT_KEY")) && !value.is_empty() {
            secrets.push(value);
        }
    }
    secrets
}

/// Runs the operator's commands against one backend; returns every run.
fn runs_on(backend: Backend) -> (Vec<Run>, Vec<String>) {
    let repo = TestRepo::new(backend).unwrap();
    let env = repo.drctl_env();
    let data = repo.path("data");
    std::fs::create_dir_all(data.join("etc")).unwrap();
    std::fs::write(data.join("etc/app.conf"), "listen 8080\n").unwrap();
    std::fs::write(data.join("blob.bin"), vec![7u8; 3 << 20]).unwrap();
    let pass = repo.path("pass");
    std::fs::write(&pass, format!("{PASSPHRASE}\n")).unwrap();
    let wrong_pass = repo.path("wrong-pass");
    std::fs::write(&wrong_pass, format!("{WRONG_PASSPHRASE}\n")).unwrap();
    let (data_s, pass_s, wrong_pass_s) = (
        data.display().to_string(),
        pass.display().to_string(),
        wrong_pass.display().to_string(),
    );
    let target = repo.path("restored").display().to_string();
    let replica = repo.path("replica").display().to_string();
    let mut runs = vec![
        run(&env, "init", &["repo", "init", "--recipient", &repo.recipient]),
        run(
            &env,
            "key add",
            &["repo", "key", "add", "--new-passphrase-file", &pass_s],
        ),
        run(&env, "backup", &["backup", "files", &data_s, "--tag", "app=web"]),
        run(&env, "snapshots", &["snapshots", "-o", "json"]),
        run(&env, "check", &["repo", "check", "--read-data"]),
        run(
            &env,
            "restore",
            &["restore", "files", "latest", "--target", &target],
        ),
        run(&env, "key list", &["repo", "key", "list", "-o", "yaml"]),
        run(&env, "copy", &["repo", "copy", "--to", &replica]),
        run(&env, "forget", &["forget", "--keep-last", "1", "--dry-run"]),
    ];
    // The passphrase alone opens it; a wrong one fails.
    let without_identity: Vec<(String, String)> = env
        .iter()
        .filter(|(k, _)| k != "DRCTL_IDENTITY")
        .cloned()
        .collect();
    runs.push(run(
        &without_identity,
        "open with passphrase",
        &["snapshots", "--passphrase-file", &pass_s],
    ));
    let wrong = run(
        &without_identity,
        "wrong passphrase",
        &["snapshots", "--passphrase-file", &wrong_pass_s],
    );
    assert!(!wrong.ok, "a wrong passphrase must not open the repository");
    runs.push(wrong);
    // The store's secret given wrong: the request fails, and neither secret is printed.
    let wrong_store: Vec<(String, String)> = env
        .iter()
        .map(|(k, v)| {
            if k.contains("SECRET") || k.ends_with("ACCOUNT_KEY") {
                (k.clone(), WRONG_SECRET.to_string())
            } else {
                (k.clone(), v.clone())
            }
        })
        .collect();
    if wrong_store != env {
        let failed = run(&wrong_store, "wrong store secret", &["snapshots"]);
        assert!(!failed.ok, "a wrong store secret must fail:\n{}", failed.text);
        runs.push(failed);
    }
    for r in &runs {
        if !["wrong passphrase", "wrong store secret"].contains(&r.what.as_str()) {
            assert!(r.ok, "{} failed:\n{}", r.what, r.text);
        }
    }
    let secrets = secrets(&repo);
    (runs, secrets)
}

fn assert_no_secret(backend: &str, runs: &[Run], secrets: &[String]) {
    let logged: usize = runs
        .iter()
        .map(|r| {
            r.text
                .lines()
                .filter(|l| l.contains("TRACE") || l.contains("DEBUG"))
                .count()
        })
        .sum();
    // The check means something only if the logs were really on.
    assert!(logged > 0, "{backend}: RUST_LOG=trace printed no log line");
    // Every form of every secret: as is, base64 (whole or inside a larger value), the bytes
    // as `Debug` prints them, hex, percent-encoded.
    let captures: Vec<Capture> = runs
        .iter()
        .map(|r| Capture::new(format!("{backend} / {}", r.what), r.text.clone()))
        .collect();
    let secrets: Vec<SecretValue> = secrets
        .iter()
        .map(|s| SecretValue::new("secret", s.clone()))
        .collect();
    let report = scan(&captures, &secrets);
    let hits: Vec<String> = report.hits.iter().map(ToString::to_string).collect();
    eprintln!(
        "{backend}: {} runs, {logged} log lines; {}",
        runs.len(),
        report.summary(captures.len(), secrets.len())
    );
    assert!(hits.is_empty(), "secrets printed:\n{}", hits.join("\n"));
}

#[test]
fn no_secret_reaches_output_or_trace_logs_on_local_disk() {
    let (runs, secrets) = runs_on(Backend::Local);
    assert_no_secret("local", &runs, &secrets);
}

#[test]
fn no_secret_reaches_output_or_trace_logs_on_rgw() {
    let (runs, secrets) = runs_on(Backend::Rgw);
    assert_no_secret("rgw", &runs, &secrets);
}

#[test]
fn no_secret_reaches_output_or_trace_logs_on_azurite() {
    let (runs, secrets) = runs_on(Backend::Azurite);
    assert_no_secret("azurite", &runs, &secrets);
}
