//! Repository URLs.

use std::fmt;
use std::path::PathBuf;

/// Where a repository lives.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Location {
    /// A directory on local disk (a plain path or `file://`).
    Local {
        /// The directory.
        path: PathBuf,
    },
    /// An S3-compatible bucket (`s3://bucket/prefix`).
    S3 {
        /// Bucket name.
        bucket: String,
        /// Key prefix inside the bucket, without slashes at either end; may be empty.
        prefix: String,
    },
    /// A Google Cloud Storage bucket (`gs://bucket/prefix`).
    Gcs {
        /// Bucket name.
        bucket: String,
        /// Key prefix.
        prefix: String,
    },
    /// An Azure Blob container (`az://container/prefix`).
    Azure {
        /// Container name.
        container: String,
        /// Key prefix.
        prefix: String,
    },
}

/// A repository URL we cannot use.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum LocationError {
    /// The scheme is not one of ours.
    #[error(
        "repository URL {url:?}: unknown scheme {scheme:?}; use a path, file:///path, \
         s3://bucket/prefix, gs://bucket/prefix or az://container/prefix"
    )]
    UnknownScheme {
        /// The URL given.
        url: String,
        /// Its scheme.
        scheme: String,
    },
    /// No bucket or container name.
    #[error("repository URL {url:?} names no bucket; write it as {scheme}://BUCKET/PREFIX")]
    MissingBucket {
        /// The URL given.
        url: String,
        /// Its scheme.
        scheme: String,
    },
    /// An empty string.
    #[error("repository URL is empty; pass --repo with a path or an s3://, gs:// or az:// URL")]
    Empty,
}

impl Location {
    /// Parses a repository URL or a local path.
    pub fn parse(url: &str) -> Result<Self, LocationError> {
        let url = url.trim();
        if url.is_empty() {
            return Err(LocationError::Empty);
        }
        let Some((scheme, rest)) = url.split_once("://") else {
            return Ok(Self::Local {
                path: PathBuf::from(url),
            });
        };
        if scheme == "file" {
            return Ok(Self::Local {
                path: PathBuf::from(rest),
            });
        }
        let (bucket, prefix) = rest.split_once('/').unwrap_or((rest, ""));
        let (bucket, prefix) = (bucket.to_string(), prefix.trim_matches('/').to_string());
        if bucket.is_empty() {
            return Err(LocationError::MissingBucket {
                url: url.to_string(),
                scheme: scheme.to_string(),
            });
        }
        match scheme {
            "s3" => Ok(Self::S3 { bucket, prefix }),
            "gs" | "gcs" => Ok(Self::Gcs { bucket, prefix }),
            "az" | "azure" => Ok(Self::Azure {
                container: bucket,
                prefix,
            }),
            _ => Err(LocationError::UnknownScheme {
                url: url.to_string(),
                scheme: scheme.to_string(),
            }),
        }
    }
}

impl fmt::Display for Location {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let join = |f: &mut fmt::Formatter<'_>, scheme: &str, bucket: &str, prefix: &str| {
            if prefix.is_empty() {
                write!(f, "{scheme}://{bucket}")
            } else {
                write!(f, "{scheme}://{bucket}/{prefix}")
            }
        };
        match self {
            Self::Local { path } => write!(f, "{}", path.display()),
            Self::S3 { bucket, prefix } => join(f, "s3", bucket, prefix),
            Self::Gcs { bucket, prefix } => join(f, "gs", bucket, prefix),
            Self::Azure { container, prefix } => join(f, "az", container, prefix),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_every_scheme() {
        assert_eq!(
            Location::parse("/var/backups").unwrap(),
            Location::Local {
                path: "/var/backups".into()
            }
        );
        assert_eq!(
            Location::parse("file:///tmp/r").unwrap(),
            Location::Local {
                path: "/tmp/r".into()
            }
        );
        assert_eq!(
            Location::parse("s3://b/team/prod/").unwrap(),
            Location::S3 {
                bucket: "b".into(),
                prefix: "team/prod".into()
            }
        );
        assert_eq!(
            Location::parse("gs://b").unwrap(),
            Location::Gcs {
                bucket: "b".into(),
                prefix: String::new()
            }
        );
        assert_eq!(
            Location::parse("az://c/p").unwrap(),
            Location::Azure {
                container: "c".into(),
                prefix: "p".into()
            }
        );
    }

    #[test]
    fn rejects_what_it_cannot_open_with_a_fix() {
        let err = Location::parse("ftp://x/y").unwrap_err().to_string();
        assert!(err.contains("ftp") && err.contains("s3://bucket/prefix"), "{err}");
        let err = Location::parse("s3:///prefix").unwrap_err().to_string();
        assert!(err.contains("s3://BUCKET/PREFIX"), "{err}");
        assert_eq!(Location::parse("  ").unwrap_err(), LocationError::Empty);
    }

    #[test]
    fn displays_as_parsed() {
        for url in ["s3://b/p/q", "gs://b", "az://c/p", "/tmp/repo"] {
            assert_eq!(Location::parse(url).unwrap().to_string(), url);
        }
    }
}
