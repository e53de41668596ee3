//! How to reach a cloud store: endpoint, credentials, retries and timeouts.

use std::fmt;
use std::time::Duration;

use object_store::{BackoffConfig, ClientOptions, RetryConfig};

/// A credential that never shows in `Debug` output, logs or error messages.
#[derive(Clone, Default, PartialEq, Eq)]
pub struct Secret(String);

impl Secret {
    /// Wraps a credential.
    pub fn new(value: impl Into<String>) -> Self {
        Self(value.into())
    }

    /// The value, for handing to the client library and nothing else.
    pub fn expose(&self) -> &str {
        &self.0
    }
}

impl fmt::Debug for Secret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("Secret(<redacted>)")
    }
}

/// Settings for opening a store. Everything is optional: clouds also read their usual
/// environment variables (`AWS_ACCESS_KEY_ID`, `AWS_ENDPOINT_URL`, `GOOGLE_SERVICE_ACCOUNT`,
/// `AZURE_STORAGE_ACCOUNT_NAME`…), and explicit values here win over them.
#[derive(Debug, Clone)]
pub struct StoreOptions {
    /// S3 endpoint for non-AWS services (`http://127.0.0.1:7480` for RGW); path-style.
    pub s3_endpoint: Option<String>,
    /// S3 region (RGW answers to any; AWS needs the bucket's).
    pub s3_region: Option<String>,
    /// S3 access key id.
    pub access_key_id: Option<String>,
    /// S3 secret access key.
    pub secret_access_key: Option<Secret>,
    /// Azure Blob endpoint, for Azurite or sovereign clouds
    /// (`http://127.0.0.1:10000/devstoreaccount1`); `AZURE_STORAGE_ENDPOINT` also works.
    pub azure_endpoint: Option<String>,
    /// Azure storage account name.
    pub azure_account: Option<String>,
    /// Azure storage account key.
    pub azure_access_key: Option<Secret>,
    /// Attempts for throttled (429/503) or failed (5xx, connection) requests.
    pub max_retries: usize,
    /// Deadline for one request, retries excluded.
    pub request_timeout: Duration,
}

impl Default for StoreOptions {
    fn default() -> Self {
        Self {
            s3_endpoint: None,
            s3_region: None,
            access_key_id: None,
            secret_access_key: None,
            azure_endpoint: None,
            azure_account: None,
            azure_access_key: None,
            max_retries: 10,
            request_timeout: Duration::from_secs(120),
        }
    }
}

impl StoreOptions {
    pub(crate) fn retry_config(&self) -> RetryConfig {
        RetryConfig {
            max_retries: self.max_retries,
            retry_timeout: Duration::from_secs(300),
            backoff: BackoffConfig {
                init_backoff: Duration::from_millis(100),
                max_backoff: Duration::from_secs(15),
                base: 2.0,
            },
        }
    }

    pub(crate) fn client_options(&self) -> ClientOptions {
        ClientOptions::new()
            .with_timeout(self.request_timeout)
            .with_connect_timeout(Duration::from_secs(10))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn secrets_never_print() {
        let opts = StoreOptions {
            secret_access_key: Some(Secret::new("hunter2")),
            ..StoreOptions::default()
        };
        assert!(!format!("{opts:?}").contains("hunter2"));
    }
}
