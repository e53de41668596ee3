//! Service addresses, as kube-apiserver allocates them: a cluster IP for each Service from
//! `--service-cluster-ip-range` and a node port for each port of a NodePort or LoadBalancer
//! Service from `--service-node-port-range`, refused with kube-apiserver's answers when the
//! requested one is taken or outside the range, and when the range is full.

use std::collections::BTreeSet;
use std::net::Ipv4Addr;

use serde_json::{Value, json};

use super::registry::ResourceType;
use super::status::ApiError;

/// The ranges Service addresses come from (kube-apiserver's flags).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AddressRanges {
    /// `--service-cluster-ip-range`: network address and prefix length (IPv4 only).
    pub service_cidr: (Ipv4Addr, u8),
    /// `--service-node-port-range`: first and last port, inclusive.
    pub node_ports: (u16, u16),
}

impl Default for AddressRanges {
    /// kubeadm's defaults: 10.96.0.0/12 and 30000-32767.
    fn default() -> Self {
        Self {
            service_cidr: (Ipv4Addr::new(10, 96, 0, 0), 12),
            node_ports: (30000, 32767),
        }
    }
}

impl AddressRanges {
    /// Parses `10.0.0.0/24`; `None` if it is not an IPv4 CIDR with a prefix of /12 to /30
    /// (kube-apiserver refuses larger ranges).
    pub fn parse_cidr(s: &str) -> Option<(Ipv4Addr, u8)> {
        let (ip, prefix) = s.split_once('/')?;
        let ip: Ipv4Addr = ip.parse().ok()?;
        let prefix: u8 = prefix.parse().ok()?;
        if !(12..=30).contains(&prefix) {
            return None;
        }
        let mask = u32::MAX << (32 - prefix);
        Some((Ipv4Addr::from(u32::from(ip) & mask), prefix))
    }

    /// Parses `30000-32767`.
    pub fn parse_ports(s: &str) -> Option<(u16, u16)> {
        let (a, b) = s.split_once('-')?;
        let (a, b): (u16, u16) = (a.trim().parse().ok()?, b.trim().parse().ok()?);
        (a <= b).then_some((a, b))
    }

    fn cidr_text(&self) -> String {
        format!("{}/{}", self.service_cidr.0, self.service_cidr.1)
    }

    /// Usable addresses: the range without its network and broadcast addresses.
    fn ip_count(&self) -> u32 {
        (1u32 << (32 - u32::from(self.service_cidr.1))) - 2
    }

    /// The address at `offset` (1-based, within the usable addresses).
    fn ip_at(&self, offset: u32) -> Ipv4Addr {
        Ipv4Addr::from(u32::from(self.service_cidr.0) + offset)
    }

    /// The 1-based offset of `ip` if it is a usable address of the range.
    fn offset_of(&self, ip: &str) -> Option<u32> {
        let ip: Ipv4Addr = ip.parse().ok()?;
        let off = u32::from(ip).checked_sub(u32::from(self.service_cidr.0))?;
        (1..=self.ip_count()).contains(&off).then_some(off)
    }
}

/// The addresses in use, kept in step with the stored Services.
#[derive(Debug, Default)]
pub struct Addresses {
    ranges: AddressRanges,
    ips: BTreeSet<u32>,
    ports: BTreeSet<u16>,
    next_ip: u32,
    next_port: u16,
}

fn cluster_ips(svc: &Value) -> Vec<&str> {
    let spec = &svc["spec"];
    let mut out: Vec<&str> = spec["clusterIPs"]
        .as_array()
        .map(|a| a.iter().filter_map(Value::as_str).collect())
        .unwrap_or_default();
    if out.is_empty()
        && let Some(ip) = spec["clusterIP"].as_str()
    {
        out.push(ip);
    }
    out.retain(|ip| !ip.is_empty() && *ip != "None");
    out
}

fn node_ports(svc: &Value) -> Vec<u16> {
    let spec = &svc["spec"];
    let mut out: Vec<u16> = spec["ports"]
        .as_array()
        .map(|ps| {
            ps.iter()
                .filter_map(|p| p["nodePort"].as_u64())
                .filter_map(|p| u16::try_from(p).ok())
                .collect()
        })
        .unwrap_or_default();
    if let Some(p) = spec["healthCheckNodePort"]
        .as_u64()
        .and_then(|p| u16::try_from(p).ok())
    {
        out.push(p);
    }
    out
}

impl Addresses {
    /// Empty, allocating from `ranges`.
    pub fn new(ranges: AddressRanges) -> Self {
        Self {
            ranges,
            ..Self::default()
        }
    }

    /// The first usable address, which the `kubernetes` Service holds.
    pub fn first_ip(&self) -> String {
        self.ranges.ip_at(1).to_string()
    }

    /// Marks the addresses of a stored Service as taken.
    pub fn hold(&mut self, svc: &Value) {
        for ip in cluster_ips(svc) {
            if let Some(off) = self.ranges.offset_of(ip) {
                self.ips.insert(off);
            }
        }
        self.ports.extend(node_ports(svc));
    }

    /// Frees the addresses of a Service that is gone or changed.
    pub fn release(&mut self, svc: &Value) {
        for ip in cluster_ips(svc) {
            if let Some(off) = self.ranges.offset_of(ip) {
                self.ips.remove(&off);
            }
        }
        for p in node_ports(svc) {
            self.ports.remove(&p);
        }
    }

    /// Gives the Service `obj` (being created, or updated from `old`) its cluster IP and node
    /// ports, or refuses as kube-apiserver does. Nothing is held until the Service is stored.
    pub fn assign(
        &mut self,
        rt: &ResourceType,
        name: &str,
        obj: &mut Value,
        old: Option<&Value>,
    ) -> Result<(), ApiError> {
        let spec = &obj["spec"];
        let kind = spec["type"].as_str().unwrap_or("ClusterIP").to_string();
        if kind == "ExternalName" {
            return Ok(());
        }
        let mine_ips: Vec<String> = old
            .map(|o| cluster_ips(o).into_iter().map(String::from).collect())
            .unwrap_or_default();
        match spec["clusterIP"].as_str().unwrap_or("") {
            "None" => {}
            "" => {
                let ip = self.next_free_ip().ok_or_else(|| {
                    ApiError::internal_error("failed to allocate a serviceIP: range is full")
                })?;
                obj["spec"]["clusterIP"] = json!(ip);
                obj["spec"]["clusterIPs"] = json!([ip]);
            }
            ip if mine_ips.iter().any(|m| m == ip) => {}
            ip => {
                let why = match self.ranges.offset_of(ip) {
                    None => format!(
                        "the provided IP ({ip}) is not in the valid range. The range of valid IPs is {}",
                        self.ranges.cidr_text()
                    ),
                    Some(off) if self.ips.contains(&off) => "provided IP is already allocated".to_string(),
                    Some(_) => String::new(),
                };
                if !why.is_empty() {
                    return Err(ApiError::invalid(
                        rt,
                        name,
                        &[(
                            "spec.clusterIPs".into(),
                            format!("Invalid value: []string{{\"{ip}\"}}: failed to allocate IP {ip}: {why}"),
                        )],
                    ));
                }
                obj["spec"]["clusterIPs"] = json!([ip]);
            }
        }
        if !matches!(kind.as_str(), "NodePort" | "LoadBalancer") {
            return Ok(());
        }
        let mine_ports: Vec<u16> = old.map(node_ports).unwrap_or_default();
        // As on a real server, an update that names a port without its nodePort keeps the
        // node port that port had.
        let old_ports: Vec<(u64, u16)> = old
            .and_then(|o| o["spec"]["ports"].as_array())
            .map(|ps| {
                ps.iter()
                    .filter_map(|p| Some((p["port"].as_u64()?, u16::try_from(p["nodePort"].as_u64()?).ok()?)))
                    .collect()
            })
            .unwrap_or_default();
        let mut chosen: Vec<u16> = Vec::new();
        let count = obj["spec"]["ports"].as_array().map_or(0, Vec::len);
        for i in 0..count {
            let port = &mut obj["spec"]["ports"][i];
            let requested = port["nodePort"].as_u64();
            let kept = port["port"]
                .as_u64()
                .and_then(|n| old_ports.iter().find(|(p, _)| *p == n).map(|(_, np)| *np));
            let np = match (requested, kept) {
                (Some(r), _) => {
                    let (lo, hi) = self.ranges.node_ports;
                    let field = format!("spec.ports[{i}].nodePort");
                    let valid = u16::try_from(r).ok().filter(|r| (lo..=hi).contains(r));
                    let Some(r) = valid else {
                        return Err(ApiError::invalid(
                            rt,
                            name,
                            &[(
                                field,
                                format!(
                                    "Invalid value: {r}: provided port is not in the valid range. The range of valid ports is {lo}-{hi}"
                                ),
                            )],
                        ));
                    };
                    let taken = (self.ports.contains(&r) && !mine_ports.contains(&r)) || chosen.contains(&r);
                    if taken {
                        return Err(ApiError::invalid(
                            rt,
                            name,
                            &[(
                                field,
                                format!("Invalid value: {r}: provided port is already allocated"),
                            )],
                        ));
                    }
                    r
                }
                (None, Some(k)) => k,
                (None, None) => self.next_free_port(&chosen).ok_or_else(|| {
                    ApiError::internal_error("failed to allocate a nodePort: range is full")
                })?,
            };
            chosen.push(np);
            port["nodePort"] = json!(np);
        }
        Ok(())
    }

    fn next_free_ip(&mut self) -> Option<String> {
        let n = self.ranges.ip_count();
        for step in 0..n {
            let off = (self.next_ip + step) % n + 1;
            if !self.ips.contains(&off) {
                self.next_ip = off % n;
                return Some(self.ranges.ip_at(off).to_string());
            }
        }
        None
    }

    fn next_free_port(&mut self, also_taken: &[u16]) -> Option<u16> {
        let (lo, hi) = self.ranges.node_ports;
        let n = u32::from(hi - lo) + 1;
        for step in 0..n {
            let off = (u32::from(self.next_port) + step) % n;
            let p = lo + off as u16;
            if !self.ports.contains(&p) && !also_taken.contains(&p) {
                self.next_port = ((off + 1) % n) as u16;
                return Some(p);
            }
        }
        None
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ranges_parse_and_count() {
        let r = AddressRanges {
            service_cidr: AddressRanges::parse_cidr("10.0.0.7/28").expect("cidr"),
            node_ports: AddressRanges::parse_ports("30000-30002").expect("ports"),
        };
        assert_eq!(r.service_cidr, (Ipv4Addr::new(10, 0, 0, 0), 28));
        assert_eq!(r.ip_count(), 14);
        assert_eq!(r.offset_of("10.0.0.15"), None, "broadcast");
        assert_eq!(r.offset_of("10.0.0.14"), Some(14));
        assert!(AddressRanges::parse_cidr("10.0.0.0/8").is_none());
        assert!(AddressRanges::parse_ports("30002-30000").is_none());
    }
}
