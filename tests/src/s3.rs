//! The one S3 call `object_store` does not offer: creating a bucket (optionally with S3 Object
//! Lock enabled, which RGW only allows at creation).

use std::io::{Read, Write};
use std::net::TcpStream;
use std::time::Duration;

use rusty_s3::{Bucket, Credentials, S3Action, UrlStyle};

use crate::HarnessError;
use crate::services::ceph::Rgw;

/// Creates `name` on RGW with a presigned `PUT /bucket`, sent over plain HTTP/1.1 on loopback
/// (a synchronous call, so it is safe inside and outside async tests alike).
pub(crate) fn create_bucket(rgw: &Rgw, name: &str, object_lock: bool) -> Result<(), HarnessError> {
    let fail = |reason: String| HarnessError::Start {
        service: "radosgw".to_string(),
        reason,
        log_tail: String::new(),
    };
    let endpoint =
        url::Url::parse(&rgw.endpoint).map_err(|e| fail(format!("bad endpoint {}: {e}", rgw.endpoint)))?;
    let bucket = Bucket::new(endpoint, UrlStyle::Path, name.to_string(), rgw.region.clone())
        .map_err(|e| fail(format!("bad bucket name {name}: {e}")))?;
    let creds = Credentials::new(rgw.access_key.clone(), rgw.secret_key.clone());
    let mut action = bucket.create_bucket(&creds);
    let lock_header = "x-amz-bucket-object-lock-enabled";
    if object_lock {
        action.headers_mut().insert(lock_header, "true");
    }
    let url = action.sign(Duration::from_secs(300));
    let extra = if object_lock {
        format!("{lock_header}: true\r\n")
    } else {
        String::new()
    };
    let host = url.host_str().unwrap_or("127.0.0.1");
    let port = url.port().unwrap_or(80);
    let path = match url.query() {
        Some(q) => format!("{}?{q}", url.path()),
        None => url.path().to_string(),
    };
    let mut stream =
        TcpStream::connect((host, port)).map_err(|e| fail(format!("connect {host}:{port}: {e}")))?;
    stream
        .set_read_timeout(Some(Duration::from_secs(60)))
        .map_err(|e| fail(format!("set timeout: {e}")))?;
    write!(
        stream,
        "PUT {path} HTTP/1.1\r\nHost: {host}:{port}\r\n{extra}Content-Length: 0\r\nConnection: close\r\n\r\n"
    )
    .map_err(|e| fail(format!("send CreateBucket: {e}")))?;
    let mut response = String::new();
    stream
        .read_to_string(&mut response)
        .map_err(|e| fail(format!("read CreateBucket response: {e}")))?;
    let status = response.split_whitespace().nth(1).unwrap_or("");
    if status == "200" {
        Ok(())
    } else {
        Err(fail(format!(
            "CreateBucket {name} answered: {}",
            response.lines().next().unwrap_or("nothing")
        )))
    }
}
