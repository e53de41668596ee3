//! S3 Object Lock: writing objects with a retention period, reading it back, and extending it.
//!
//! A bucket created with object lock enabled keeps every version of an object whose retention
//! date has not passed, whoever asks to delete it (in `COMPLIANCE` mode even the root account;
//! in `GOVERNANCE` mode anyone without `s3:BypassGovernanceRetention`). Lifeboat's copies into
//! such a bucket are written with a retention date, so a replica survives stolen credentials
//! and ransomware for that long. (A plain `DELETE` on a versioned bucket still "succeeds": it
//! hides the object behind a delete marker while the locked version stays. That is why prune
//! and forget ask before deleting, and leave locked objects alone.)
//!
//! `object_store` 0.14 can neither send `x-amz-object-lock-*` headers nor call the
//! `?retention` and `?object-lock` sub-resources, so this module makes those few requests
//! itself: signed by `rusty-s3` (SigV4 query signing, covering the lock headers, as AWS
//! requires for `x-amz-*` headers) and sent with `reqwest`, the HTTP client `object_store`
//! already links. Credentials come from [`StoreOptions`] or the `AWS_ACCESS_KEY_ID`,
//! `AWS_SECRET_ACCESS_KEY` and `AWS_SESSION_TOKEN` variables; instance profiles and web
//! identity tokens are not supported on this path. API reference: Amazon S3 `PutObject`
//! (object lock headers), `GetObjectRetention`, `PutObjectRetention`,
//! `GetObjectLockConfiguration`; Ceph RGW implements the same calls.

use std::fmt;
use std::time::Duration;

use base64::Engine as _;
use bytes::Bytes;
use chrono::{DateTime, SecondsFormat, Utc};
use md5::Digest as _;
use rusty_s3::{Bucket, Credentials, S3Action, UrlStyle};

use super::{Location, StoreOptions};

/// How long a presigned request stays valid: only as long as it takes to send it.
const SIGNATURE_TTL: Duration = Duration::from_secs(15 * 60);

/// Object lock's two retention modes.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "SCREAMING_SNAKE_CASE")]
pub enum LockMode {
    /// Users with `s3:BypassGovernanceRetention` may still shorten or remove the lock.
    Governance,
    /// Nobody, not even the account's root user, can delete the object before its date.
    Compliance,
}

impl LockMode {
    /// The S3 spelling (`GOVERNANCE`, `COMPLIANCE`).
    pub fn as_s3(self) -> &'static str {
        match self {
            Self::Governance => "GOVERNANCE",
            Self::Compliance => "COMPLIANCE",
        }
    }

    fn parse(s: &str) -> Option<Self> {
        match s.trim().to_ascii_uppercase().as_str() {
            "GOVERNANCE" => Some(Self::Governance),
            "COMPLIANCE" => Some(Self::Compliance),
            _ => None,
        }
    }
}

impl fmt::Display for LockMode {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_s3())
    }
}

/// The retention a copy writes: a mode, and how many days from the write it lasts.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct LockSettings {
    /// Governance or compliance.
    pub mode: LockMode,
    /// Days each object stays locked after it is written (or after the newest snapshot that
    /// needs it was copied).
    pub days: u32,
}

impl LockSettings {
    /// The retention for objects written at `now`.
    pub fn retention(&self, now: DateTime<Utc>) -> Retention {
        Retention {
            mode: self.mode,
            until: now + chrono::Duration::days(i64::from(self.days)),
        }
    }
}

/// One object's retention.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct Retention {
    /// Governance or compliance.
    pub mode: LockMode,
    /// The object version cannot be deleted before this time.
    pub until: DateTime<Utc>,
}

/// Whether a bucket can lock objects.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
#[serde(tag = "state", content = "detail", rename_all = "camelCase")]
pub enum LockSupport {
    /// Object lock is enabled; with the bucket's default retention rule, if it has one
    /// (`GOVERNANCE 30 days`).
    Enabled(Option<String>),
    /// The bucket was created without object lock (it cannot be turned on later on RGW;
    /// create a new bucket with `--object-lock-enabled-for-bucket`).
    Disabled,
    /// The store cannot tell (not S3, the service does not implement object lock, or the
    /// credentials may not read the configuration): why.
    Unsupported(String),
}

impl LockSupport {
    /// True when objects can be locked.
    pub fn enabled(&self) -> bool {
        matches!(self, Self::Enabled(_))
    }
}

impl fmt::Display for LockSupport {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Enabled(None) => f.write_str("object lock enabled (no default retention)"),
            Self::Enabled(Some(rule)) => write!(f, "object lock enabled (default retention {rule})"),
            Self::Disabled => f.write_str("object lock not enabled on this bucket"),
            Self::Unsupported(why) => write!(f, "object lock unavailable: {why}"),
        }
    }
}

/// An object lock request that failed.
#[derive(Debug, thiserror::Error)]
pub enum LockError {
    /// The request could not be made or sent.
    #[error("{op} {key} in {url}: {message}")]
    Request {
        /// What was being done.
        op: &'static str,
        /// The object key (relative to the repository).
        key: String,
        /// The repository URL.
        url: String,
        /// What went wrong.
        message: String,
    },
    /// The service answered with an error.
    #[error("{op} {key} in {url}: HTTP {status} {code}: {message}")]
    Refused {
        /// What was being done.
        op: &'static str,
        /// The object key.
        key: String,
        /// The repository URL.
        url: String,
        /// HTTP status.
        status: u16,
        /// The S3 error code (`AccessDenied`, `InvalidRequest`…).
        code: String,
        /// The service's message.
        message: String,
    },
}

/// Object lock requests against one S3 bucket and repository prefix.
pub struct ObjectLock {
    http: reqwest::Client,
    bucket: Bucket,
    credentials: Credentials,
    prefix: String,
    url: String,
    support: tokio::sync::OnceCell<LockSupport>,
}

impl fmt::Debug for ObjectLock {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ObjectLock")
            .field("url", &self.url)
            .finish_non_exhaustive()
    }
}

/// The body of `GetObjectRetention` and `PutObjectRetention`.
#[derive(Debug, serde::Deserialize)]
#[serde(rename_all = "PascalCase")]
struct RetentionXml {
    mode: String,
    retain_until_date: String,
}

#[derive(Debug, Default, serde::Deserialize)]
#[serde(rename_all = "PascalCase")]
struct LockConfigurationXml {
    #[serde(default)]
    object_lock_enabled: String,
    #[serde(default)]
    rule: Option<RuleXml>,
}

#[derive(Debug, serde::Deserialize)]
#[serde(rename_all = "PascalCase")]
struct RuleXml {
    default_retention: DefaultRetentionXml,
}

#[derive(Debug, serde::Deserialize)]
#[serde(rename_all = "PascalCase")]
struct DefaultRetentionXml {
    mode: String,
    #[serde(default)]
    days: Option<u32>,
    #[serde(default)]
    years: Option<u32>,
}

#[derive(Debug, Default, serde::Deserialize)]
#[serde(rename_all = "PascalCase")]
struct ErrorXml {
    #[serde(default)]
    code: String,
    #[serde(default)]
    message: String,
}

impl ObjectLock {
    /// The object lock client for an S3 location; `None` for other stores, or when no
    /// static credentials are known (then lock state is reported as unavailable).
    pub(crate) fn for_location(location: &Location, options: &StoreOptions) -> Option<Self> {
        let Location::S3 { bucket, prefix } = location else {
            return None;
        };
        let env = |k: &str| std::env::var(k).ok().filter(|v| !v.trim().is_empty());
        let region = options
            .s3_region
            .clone()
            .or_else(|| env("AWS_REGION"))
            .or_else(|| env("AWS_DEFAULT_REGION"))
            .unwrap_or_else(|| "us-east-1".to_string());
        let endpoint = options
            .s3_endpoint
            .clone()
            .or_else(|| env("AWS_ENDPOINT_URL"))
            .or_else(|| env("AWS_ENDPOINT"))
            .unwrap_or_else(|| format!("https://s3.{region}.amazonaws.com"));
        let credentials = match (&options.access_key_id, &options.secret_access_key) {
            (Some(key), Some(secret)) => Credentials::new(key.clone(), secret.expose().to_string()),
            _ => Credentials::from_env()?,
        };
        let endpoint = url::Url::parse(&endpoint).ok()?;
        let bucket = Bucket::new(endpoint, UrlStyle::Path, bucket.clone(), region).ok()?;
        let http = reqwest::Client::builder()
            .timeout(options.request_timeout)
            .connect_timeout(Duration::from_secs(10))
            .no_gzip()
            .build()
            .ok()?;
        Some(Self {
            http,
            bucket,
            credentials,
            prefix: prefix.clone(),
            url: location.to_string(),
            support: tokio::sync::OnceCell::new(),
        })
    }

    fn object(&self, key: &str) -> String {
        if self.prefix.is_empty() {
            key.to_string()
        } else {
            format!("{}/{key}", self.prefix)
        }
    }

    fn request_error(&self, op: &'static str, key: &str, e: impl fmt::Display) -> LockError {
        LockError::Request {
            op,
            key: key.to_string(),
            url: self.url.clone(),
            message: e.to_string(),
        }
    }

    /// Sends a signed request; returns the status and body.
    async fn send(
        &self,
        op: &'static str,
        key: &str,
        request: reqwest::RequestBuilder,
    ) -> Result<(u16, Bytes), LockError> {
        // A reqwest error prints its URL, and a presigned URL is a credential until it expires:
        // errors keep only the store's location (`self.url`).
        let response = request
            .send()
            .await
            .map_err(|e| self.request_error(op, key, e.without_url()))?;
        let status = response.status().as_u16();
        let body = response
            .bytes()
            .await
            .map_err(|e| self.request_error(op, key, e.without_url()))?;
        Ok((status, body))
    }

    fn refused(&self, op: &'static str, key: &str, status: u16, body: &[u8]) -> LockError {
        let err: ErrorXml = quick_xml::de::from_reader(body).unwrap_or_default();
        LockError::Refused {
            op,
            key: key.to_string(),
            url: self.url.clone(),
            status,
            code: if err.code.is_empty() {
                "(no error code)".to_string()
            } else {
                err.code
            },
            message: err.message,
        }
    }

    /// Whether the bucket locks objects (asked once, then remembered).
    pub async fn support(&self) -> Result<&LockSupport, LockError> {
        self.support
            .get_or_try_init(|| async {
                let op = "read the object lock configuration of";
                let mut action = self.bucket.get_object(Some(&self.credentials), "");
                action.query_mut().insert("object-lock", "");
                let url = action.sign(SIGNATURE_TTL);
                let (status, body) = self.send(op, "the bucket", self.http.get(url)).await?;
                Ok(match status {
                    200 => {
                        let c: LockConfigurationXml =
                            quick_xml::de::from_reader(&body[..]).unwrap_or_default();
                        if c.object_lock_enabled.eq_ignore_ascii_case("enabled") {
                            LockSupport::Enabled(c.rule.map(|r| {
                                let d = r.default_retention;
                                match (d.days, d.years) {
                                    (Some(n), _) => format!("{} {n} days", d.mode),
                                    (None, Some(n)) => format!("{} {n} years", d.mode),
                                    _ => d.mode,
                                }
                            }))
                        } else {
                            LockSupport::Disabled
                        }
                    }
                    404 => LockSupport::Disabled,
                    _ => {
                        let e = self.refused(op, "the bucket", status, &body);
                        LockSupport::Unsupported(e.to_string())
                    }
                })
            })
            .await
    }

    /// The retention of `key` (relative to the repository root); `None` when it has none
    /// or does not exist.
    pub async fn retention(&self, key: &str) -> Result<Option<Retention>, LockError> {
        let op = "read the retention of";
        let object = self.object(key);
        let mut action = self.bucket.get_object(Some(&self.credentials), &object);
        action.query_mut().insert("retention", "");
        let url = action.sign(SIGNATURE_TTL);
        let (status, body) = self.send(op, key, self.http.get(url)).await?;
        match status {
            200 => {
                let r: RetentionXml = quick_xml::de::from_reader(&body[..])
                    .map_err(|e| self.request_error(op, key, format!("unreadable answer: {e}")))?;
                let mode = LockMode::parse(&r.mode)
                    .ok_or_else(|| self.request_error(op, key, format!("unknown mode {:?}", r.mode)))?;
                let until = DateTime::parse_from_rfc3339(r.retain_until_date.trim())
                    .map_err(|e| {
                        self.request_error(op, key, format!("bad date {:?}: {e}", r.retain_until_date))
                    })?
                    .with_timezone(&Utc);
                Ok(Some(Retention { mode, until }))
            }
            // No retention on this object (NoSuchObjectLockConfiguration), or no object.
            404 => Ok(None),
            _ => Err(self.refused(op, key, status, &body)),
        }
    }

    /// Writes `key` with `body`, locked until `retention.until`.
    pub async fn put(&self, key: &str, body: Bytes, retention: &Retention) -> Result<(), LockError> {
        let op = "write locked";
        let object = self.object(key);
        let md5 = base64::engine::general_purpose::STANDARD.encode(md5::Md5::digest(&body));
        let until = retention.until.to_rfc3339_opts(SecondsFormat::Secs, true);
        let mut action = self.bucket.put_object(Some(&self.credentials), &object);
        let headers = action.headers_mut();
        headers.insert("content-md5", md5.clone());
        headers.insert("x-amz-object-lock-mode", retention.mode.as_s3());
        headers.insert("x-amz-object-lock-retain-until-date", until.clone());
        let url = action.sign(SIGNATURE_TTL);
        let request = self
            .http
            .put(url)
            .header("content-md5", md5)
            .header("x-amz-object-lock-mode", retention.mode.as_s3())
            .header("x-amz-object-lock-retain-until-date", until)
            .header("content-length", body.len())
            .body(body);
        match self.send(op, key, request).await? {
            (200, _) => Ok(()),
            (status, body) => Err(self.refused(op, key, status, &body)),
        }
    }

    /// Makes `key` locked until at least `retention.until` (retention can only be extended,
    /// never shortened, without bypass rights).
    pub async fn extend(&self, key: &str, retention: &Retention) -> Result<(), LockError> {
        let op = "extend the retention of";
        let object = self.object(key);
        let xml = format!(
            "<Retention xmlns=\"http://s3.amazonaws.com/doc/2006-03-01/\"><Mode>{}</Mode>\
             <RetainUntilDate>{}</RetainUntilDate></Retention>",
            retention.mode.as_s3(),
            retention.until.to_rfc3339_opts(SecondsFormat::Secs, true)
        );
        let md5 = base64::engine::general_purpose::STANDARD.encode(md5::Md5::digest(xml.as_bytes()));
        let mut action = self.bucket.put_object(Some(&self.credentials), &object);
        action.query_mut().insert("retention", "");
        action.headers_mut().insert("content-md5", md5.clone());
        let url = action.sign(SIGNATURE_TTL);
        let request = self
            .http
            .put(url)
            .header("content-md5", md5)
            .header("content-length", xml.len())
            .body(xml);
        match self.send(op, key, request).await? {
            (200, _) => Ok(()),
            (status, body) => Err(self.refused(op, key, status, &body)),
        }
    }

    /// Where this client points, for messages.
    pub fn url(&self) -> &str {
        &self.url
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_the_answers_s3_and_rgw_give() {
        let r: RetentionXml = quick_xml::de::from_str(
            "<?xml version=\"1.0\" encoding=\"UTF-8\"?><Retention xmlns=\"http://s3.amazonaws.com/doc/2006-03-01/\">\
             <Mode>GOVERNANCE</Mode><RetainUntilDate>2026-12-01T10:00:00.000Z</RetainUntilDate></Retention>",
        )
        .unwrap();
        assert_eq!(LockMode::parse(&r.mode), Some(LockMode::Governance));
        assert!(DateTime::parse_from_rfc3339(&r.retain_until_date).is_ok());
        let c: LockConfigurationXml = quick_xml::de::from_str(
            "<ObjectLockConfiguration><ObjectLockEnabled>Enabled</ObjectLockEnabled><Rule><DefaultRetention>\
             <Mode>COMPLIANCE</Mode><Days>7</Days></DefaultRetention></Rule></ObjectLockConfiguration>",
        )
        .unwrap();
        assert_eq!(c.object_lock_enabled, "Enabled");
        assert_eq!(c.rule.unwrap().default_retention.days, Some(7));
        let e: ErrorXml = quick_xml::de::from_str(
            "<Error><Code>AccessDenied</Code><Message>forbidden</Message><RequestId>x</RequestId></Error>",
        )
        .unwrap();
        assert_eq!(e.code, "AccessDenied");
    }

    #[test]
    fn only_s3_locations_get_a_client_and_secrets_stay_out_of_debug() {
        let options = StoreOptions {
            s3_endpoint: Some("http://127.0.0.1:1".into()),
            access_key_id: Some("AK".into()),
            secret_access_key: Some(super::super::Secret::new("hunter2")),
            ..StoreOptions::default()
        };
        let s3 = ObjectLock::for_location(&Location::parse("s3://b/p").unwrap(), &options).unwrap();
        assert_eq!(s3.object("data/ab/x"), "p/data/ab/x");
        assert!(!format!("{s3:?}").contains("hunter2"));
        assert!(ObjectLock::for_location(&Location::parse("az://c/p").unwrap(), &options).is_none());
        assert!(ObjectLock::for_location(&Location::parse("/tmp/x").unwrap(), &options).is_none());
    }
}
