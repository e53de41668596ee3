//! Request checks shared by the controller RPCs: capacity ranges and volume capabilities.

use crate::error::{CsiError, Result, invalid};
use crate::proto::volume_capability::AccessType;
use crate::proto::volume_capability::access_mode::Mode;
use crate::proto::{CapacityRange, VolumeCapability};

/// Size of a volume created without a capacity range.
pub const DEFAULT_SIZE: u64 = 1 << 30;
const MIB: u64 = 1 << 20;

/// A capacity range, decided: the size to provision and the bounds an existing volume must meet.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Capacity {
    /// Bytes to provision.
    pub size: u64,
    /// Lower bound (0 = none).
    pub required: u64,
    /// Upper bound (0 = none).
    pub limit: u64,
}

/// Rounds the request up to whole MiB, within the limit; OUT_OF_RANGE if impossible.
pub fn capacity(range: Option<&CapacityRange>) -> Result<Capacity> {
    let (req, lim) = range.map_or((0, 0), |r| (r.required_bytes, r.limit_bytes));
    if req < 0 || lim < 0 {
        return Err(invalid("capacity bytes must not be negative"));
    }
    let (required, limit) = (req as u64, lim as u64);
    if limit > 0 && required > limit {
        return Err(CsiError::OutOfRange(format!(
            "required {required} bytes exceeds the limit of {limit}"
        )));
    }
    let wanted = if required == 0 {
        DEFAULT_SIZE
    } else {
        required.div_ceil(MIB) * MIB
    };
    let size = if limit > 0 && wanted > limit {
        if required == 0 {
            limit
        } else {
            required.max(limit / MIB * MIB).min(limit)
        }
    } else {
        wanted
    };
    if size == 0 || size < required {
        return Err(CsiError::OutOfRange(format!(
            "no size between {required} and {limit} bytes"
        )));
    }
    Ok(Capacity {
        size,
        required,
        limit,
    })
}

/// Which backend a capability check is for.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Backend {
    /// Block devices (and filesystems on them).
    Rbd,
    /// Shared directories.
    Nfs,
}

/// Checks every capability is well formed; returns the first unsupported one as a message.
pub fn unsupported(backend: Backend, caps: &[VolumeCapability]) -> Result<Option<String>> {
    if caps.is_empty() {
        return Err(invalid("volume_capabilities is required"));
    }
    for cap in caps {
        let access = cap
            .access_type
            .as_ref()
            .ok_or_else(|| invalid("volume capability needs block or mount"))?;
        let mode = cap
            .access_mode
            .as_ref()
            .map(|m| m.mode())
            .ok_or_else(|| invalid("volume capability needs an access mode"))?;
        if mode == Mode::Unknown {
            return Err(invalid("access mode UNKNOWN"));
        }
        let block = matches!(access, AccessType::Block(_));
        let multi_writer = matches!(mode, Mode::MultiNodeMultiWriter | Mode::MultiNodeSingleWriter);
        let why = match backend {
            Backend::Nfs if block => Some("NFS volumes cannot be raw block devices"),
            Backend::Rbd if multi_writer && !block => {
                Some("RBD filesystems cannot be written from several nodes; use a block volume")
            }
            _ => None,
        };
        if let Some(w) = why {
            return Ok(Some(w.to_string()));
        }
    }
    Ok(None)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn capacity_rounds_within_limits() {
        let r = |req, lim| {
            capacity(Some(&CapacityRange {
                required_bytes: req,
                limit_bytes: lim,
            }))
        };
        assert_eq!(capacity(None).expect("default").size, DEFAULT_SIZE);
        assert_eq!(r(1, 0).expect("1").size, MIB);
        assert_eq!(r(MIB as i64 + 1, 3 * MIB as i64).expect("r").size, 2 * MIB);
        assert_eq!(r(1000, 1000).expect("exact").size, 1000);
        assert!(matches!(r(10, 5), Err(CsiError::OutOfRange(_))));
        assert!(matches!(r(-1, 0), Err(CsiError::InvalidArgument(_))));
    }
}
