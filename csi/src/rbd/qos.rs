//! RBD QoS as CSI mutable parameters (VolumeAttributesClass, ControllerModifyVolume, and
//! CreateVolume's `mutable_parameters`).
//!
//! librbd throttles an image's I/O by the `rbd_qos_*` options, which it also reads per image
//! from image metadata keys `conf_rbd_qos_*` (`rbd config image set` writes the same keys), so
//! a limit set here applies the next time a librbd client (rbd-nbd, rbd-fuse, QEMU) opens the
//! image. The kernel client (krbd) does not implement QoS.

use std::collections::HashMap;

use lifeboat_rbd::Image;

use crate::error::{CsiError, Result, invalid};

/// The mutable parameters, the librbd option each sets, and its unit.
pub const KEYS: [(&str, &str, &str); 6] = [
    ("qosIopsLimit", "rbd_qos_iops_limit", "I/O operations per second"),
    (
        "qosReadIopsLimit",
        "rbd_qos_read_iops_limit",
        "read operations per second",
    ),
    (
        "qosWriteIopsLimit",
        "rbd_qos_write_iops_limit",
        "write operations per second",
    ),
    ("qosBpsLimit", "rbd_qos_bps_limit", "bytes per second"),
    (
        "qosReadBpsLimit",
        "rbd_qos_read_bps_limit",
        "bytes read per second",
    ),
    (
        "qosWriteBpsLimit",
        "rbd_qos_write_bps_limit",
        "bytes written per second",
    ),
];

/// Checked QoS limits: (librbd option, value; 0 = unlimited), in [`KEYS`] order.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Qos(pub Vec<(&'static str, u64)>);

impl Qos {
    /// Parses mutable parameters; unknown keys and values that are not whole non-negative
    /// numbers are INVALID_ARGUMENT, naming the key and what is accepted.
    pub fn parse(params: &HashMap<String, String>) -> Result<Self> {
        if let Some(unknown) = params.keys().find(|k| !KEYS.iter().any(|(p, _, _)| p == k)) {
            let known: Vec<&str> = KEYS.iter().map(|(p, _, _)| *p).collect();
            return Err(invalid(format!(
                "mutable parameter {unknown:?} is not supported for RBD volumes; known: {}",
                known.join(", ")
            )));
        }
        let mut out = Vec::new();
        for (param, option, unit) in KEYS {
            let Some(v) = params.get(param) else {
                continue;
            };
            let n = v.trim().parse::<u64>().map_err(|_| {
                invalid(format!(
                    "mutable parameter {param}={v:?}: a whole number of {unit} (0 = unlimited)"
                ))
            })?;
            out.push((option, n));
        }
        Ok(Self(out))
    }

    /// The image metadata key librbd reads an option from.
    pub fn metadata_key(option: &str) -> String {
        format!("conf_{option}")
    }

    /// Writes the limits into an open image's metadata (0 removes the limit).
    pub fn apply(&self, img: &mut Image<'_>) -> Result<()> {
        for (option, value) in &self.0 {
            let key = Self::metadata_key(option);
            let r = if *value == 0 {
                img.remove_metadata(&key)
            } else {
                img.set_metadata(&key, &value.to_string())
            };
            r.map_err(CsiError::rbd)?;
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn p(kv: &[(&str, &str)]) -> HashMap<String, String> {
        kv.iter().map(|(k, v)| (k.to_string(), v.to_string())).collect()
    }

    #[test]
    fn known_keys_parse_and_anything_else_is_refused() {
        let q = Qos::parse(&p(&[("qosIopsLimit", "100"), ("qosWriteBpsLimit", "0")])).expect("valid");
        assert_eq!(
            q.0,
            vec![("rbd_qos_iops_limit", 100), ("rbd_qos_write_bps_limit", 0)]
        );
        assert_eq!(Qos::parse(&p(&[])).expect("empty"), Qos::default());
        for bad in [
            p(&[("qosIopsLimit", "-1")]),
            p(&[("qosIopsLimit", "ten")]),
            p(&[("qosIopsLimit", "1.5")]),
            p(&[("iops", "10")]),
            p(&[("rbd_qos_iops_limit", "10")]),
        ] {
            assert!(
                matches!(Qos::parse(&bad), Err(CsiError::InvalidArgument(_))),
                "{bad:?}"
            );
        }
    }
}
