//! Which namespaces and resources a backup or restore covers: include/exclude glob lists,
//! as Velero users write them.

use globset::{Glob, GlobSet, GlobSetBuilder};

use super::{ObjectsError, ResourceRecord};
use crate::crd::ClusterScoped;

pub(crate) fn globs(field: &str, patterns: &[String]) -> Result<Option<GlobSet>, ObjectsError> {
    if patterns.is_empty() {
        return Ok(None);
    }
    let mut b = GlobSetBuilder::new();
    for p in patterns {
        let glob = Glob::new(p).map_err(|e| {
            ObjectsError::Invalid(format!(
                "{field}: `{p}` is not a valid glob ({e}); use names or `*` patterns"
            ))
        })?;
        b.add(glob);
    }
    b.build()
        .map(Some)
        .map_err(|e| ObjectsError::Invalid(format!("{field}: {e}")))
}

/// Namespaces by name.
#[derive(Debug, Clone, Default)]
pub struct NamespaceFilter {
    include: Option<GlobSet>,
    exclude: Option<GlobSet>,
}

impl NamespaceFilter {
    /// Builds it; an empty include list, or one holding `*`, means every namespace (and
    /// does not narrow cluster-scoped `Auto`).
    pub fn new(include: &[String], exclude: &[String]) -> Result<Self, ObjectsError> {
        let include = if include.iter().any(|g| g == "*") {
            &[]
        } else {
            include
        };
        Ok(Self {
            include: globs("includedNamespaces", include)?,
            exclude: globs("excludedNamespaces", exclude)?,
        })
    }

    /// True when `ns` is covered.
    pub fn matches(&self, ns: &str) -> bool {
        self.include.as_ref().is_none_or(|g| g.is_match(ns))
            && !self.exclude.as_ref().is_some_and(|g| g.is_match(ns))
    }

    /// True when some namespaces are left out (so cluster-scoped `Auto` narrows).
    pub fn is_narrowed(&self) -> bool {
        self.include.is_some() || self.exclude.is_some()
    }
}

/// Resource types, named `plural` or `plural.group` (`deployments`, `deployments.apps`), or
/// globs of those; [`resolve`](Self::resolve) also takes the names kubectl takes (kind,
/// singular, short name: `Deployment`, `deployment`, `deploy`, each optionally `.group`).
#[derive(Debug, Clone, Default)]
pub struct ResourceFilter {
    include: Option<GlobSet>,
    exclude: Option<GlobSet>,
    include_names: Vec<String>,
    exclude_names: Vec<String>,
}

impl ResourceFilter {
    /// Builds it; an empty include list means every resource. Empty names (a trailing
    /// comma) are dropped.
    pub fn new(include: &[String], exclude: &[String]) -> Result<Self, ObjectsError> {
        let named = |list: &[String]| -> Vec<String> {
            list.iter()
                .map(|n| n.trim().to_string())
                .filter(|n| !n.is_empty())
                .collect()
        };
        let (include, exclude) = (&named(include)[..], &named(exclude)[..]);
        Ok(Self {
            include: globs("includedResources", include)?,
            exclude: globs("excludedResources", exclude)?,
            include_names: include.to_vec(),
            exclude_names: exclude.to_vec(),
        })
    }

    /// Whether it names any type (an include or exclude list is given).
    pub fn names_types(&self) -> bool {
        !self.include_names.is_empty() || !self.exclude_names.is_empty()
    }

    /// This filter with each name that is not a glob replaced by the `plural[.group]` of
    /// every type in `types` it names, as kubectl resolves a resource argument: plural,
    /// singular, kind or short name, case-insensitive, optionally followed by `.group`.
    /// Returns it with a warning for each excluded name that names no type.
    ///
    /// Errors: [`ObjectsError::UnknownResource`] for an included name without a group that
    /// names no type (a typo would otherwise take nothing, silently). An included
    /// `name.group` that names none is a warning: its CRD may not be installed here, or its
    /// group not have answered discovery (a schedule shared by clusters must not fail).
    pub fn resolve(&self, types: &[&ResourceRecord]) -> Result<(Self, Vec<String>), ObjectsError> {
        let mut warnings = Vec::new();
        let mut include = Vec::new();
        for name in &self.include_names {
            match resolve_name(name, types) {
                Some(keys) => include.extend(keys),
                None if name.contains('.') => {
                    warnings.push(format!(
                        "includedResources: no resource type named {name:?} here (its CRD is not installed, \
                         or its API group did not answer), so nothing of it is taken"
                    ));
                    // Kept, matching nothing: an include list never widens to everything.
                    include.push(name.clone());
                }
                None => {
                    return Err(ObjectsError::UnknownResource {
                        field: "includedResources",
                        name: name.clone(),
                    });
                }
            }
        }
        let mut exclude = Vec::new();
        for name in &self.exclude_names {
            match resolve_name(name, types) {
                Some(keys) => exclude.extend(keys),
                None => {
                    warnings.push(format!(
                        "excludedResources: no resource type named {name:?} here, so it excludes nothing \
                         (`kubectl api-resources` lists the names)"
                    ));
                    exclude.push(name.clone());
                }
            }
        }
        include.dedup();
        exclude.dedup();
        Ok((Self::new(&include, &exclude)?, warnings))
    }

    /// True when the resource `plural` of `group` is covered.
    pub fn matches(&self, plural: &str, group: &str) -> bool {
        let key = super::resource_key(plural, group);
        let hit = |g: &GlobSet| g.is_match(plural) || g.is_match(&key);
        self.include.as_ref().is_none_or(hit) && !self.exclude.as_ref().is_some_and(hit)
    }

    /// True when the exclusions name the resource `plural` of `group` (what selected
    /// objects need comes along whatever the inclusions say, unless excluded by name).
    pub fn excludes(&self, plural: &str, group: &str) -> bool {
        let key = super::resource_key(plural, group);
        self.exclude
            .as_ref()
            .is_some_and(|g| g.is_match(plural) || g.is_match(&key))
    }
}

/// The `plural[.group]` keys of the types `name` names (itself when it is a glob); `None`
/// when it names none.
fn resolve_name(name: &str, types: &[&ResourceRecord]) -> Option<Vec<String>> {
    if name.contains(['*', '?', '[', '{']) {
        return Some(vec![name.to_string()]);
    }
    let lower = name.trim().to_ascii_lowercase();
    let (short, group) = match lower.split_once('.') {
        // kubectl's `resource.version.group` (`deployments.v1.apps`, `pods.v1`) too.
        Some((n, g)) => match g.split_once('.') {
            Some((v, rest)) if is_version(v) => (n, Some(rest)),
            None if is_version(g) => (n, Some("")),
            _ => (n, Some(g)),
        },
        None => (lower.as_str(), None),
    };
    if short.is_empty() {
        return None;
    }
    let mut keys: Vec<String> = types
        .iter()
        .filter(|t| {
            t.key() == lower
                || (group.is_none_or(|g| t.group == g)
                    && (t.plural == short
                        || (!t.singular.is_empty() && t.singular == short)
                        || t.kind.to_ascii_lowercase() == short
                        || t.short_names.iter().any(|s| s == short)))
        })
        .map(|t| t.key())
        .collect();
    keys.sort();
    keys.dedup();
    (!keys.is_empty()).then_some(keys)
}

/// Whether `s` is a Kubernetes API version (`v1`, `v2beta1`, `v1alpha3`).
fn is_version(s: &str) -> bool {
    let Some(rest) = s.strip_prefix('v') else {
        return false;
    };
    let digits = rest.bytes().take_while(u8::is_ascii_digit).count();
    if digits == 0 {
        return false;
    }
    let tail = &rest[digits..];
    tail.is_empty()
        || ["alpha", "beta"].iter().any(|stage| {
            tail.strip_prefix(stage)
                .is_some_and(|n| !n.is_empty() && n.bytes().all(|b| b.is_ascii_digit()))
        })
}

/// Everything that decides whether an object is taken.
#[derive(Debug, Clone, Default)]
pub struct ObjectFilter {
    /// Namespaces.
    pub namespaces: NamespaceFilter,
    /// Resource types.
    pub resources: ResourceFilter,
    /// Cluster-scoped objects.
    pub cluster_scoped: ClusterScoped,
    /// Label selector, evaluated by the API server.
    pub label_selector: Option<String>,
}

impl ObjectFilter {
    /// True when cluster-scoped objects of a resource are taken wholesale (not only those
    /// the namespaced objects need).
    pub fn all_cluster_scoped(&self) -> bool {
        match self.cluster_scoped {
            ClusterScoped::Include => true,
            ClusterScoped::Exclude => false,
            ClusterScoped::Auto => !self.namespaces.is_narrowed(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn s(v: &[&str]) -> Vec<String> {
        v.iter().map(|s| s.to_string()).collect()
    }

    #[test]
    fn namespaces_include_then_exclude() {
        let f = NamespaceFilter::new(&s(&["team-*", "web"]), &s(&["team-tmp"])).expect("valid");
        assert!(f.matches("team-a"));
        assert!(f.matches("web"));
        assert!(!f.matches("team-tmp"));
        assert!(!f.matches("kube-system"));
        assert!(NamespaceFilter::new(&[], &[]).expect("valid").matches("anything"));
    }

    #[test]
    fn a_star_includes_every_namespace_without_narrowing() {
        let all = NamespaceFilter::new(&s(&["*"]), &[]).expect("valid");
        assert!(all.matches("kube-system") && !all.is_narrowed());
        let but = NamespaceFilter::new(&s(&["*"]), &s(&["tmp"])).expect("valid");
        assert!(!but.matches("tmp") && but.is_narrowed());
    }

    #[test]
    fn resources_match_plural_or_qualified() {
        let f = ResourceFilter::new(&s(&["deployments.apps", "configmaps"]), &[]).expect("valid");
        assert!(f.matches("deployments", "apps"));
        assert!(f.matches("configmaps", ""));
        assert!(!f.matches("secrets", ""));
        let ex = ResourceFilter::new(&[], &s(&["*.lifeboat.dev", "secrets"])).expect("valid");
        assert!(!ex.matches("backups", "lifeboat.dev"));
        assert!(!ex.matches("secrets", ""));
        assert!(ex.matches("pods", ""));
    }

    fn record(group: &str, kind: &str, plural: &str, singular: &str, short: &[&str]) -> ResourceRecord {
        ResourceRecord {
            group: group.into(),
            version: "v1".into(),
            kind: kind.into(),
            plural: plural.into(),
            namespaced: true,
            status_subresource: false,
            singular: singular.into(),
            short_names: s(short),
        }
    }

    #[test]
    fn names_resolve_as_kubectl_resolves_them() {
        let types = [
            record("apps", "Deployment", "deployments", "deployment", &["deploy"]),
            record("", "ConfigMap", "configmaps", "configmap", &["cm"]),
            record("", "Secret", "secrets", "secret", &[]),
            record("", "Event", "events", "event", &["ev"]),
            record("events.k8s.io", "Event", "events", "event", &["ev"]),
            record("example.com", "Widget", "widgets", "widget", &[]),
        ];
        let types: Vec<&ResourceRecord> = types.iter().collect();
        let resolve = |include: &[&str], exclude: &[&str]| {
            ResourceFilter::new(&s(include), &s(exclude))
                .expect("valid")
                .resolve(&types)
        };
        for name in [
            "deploy",
            "Deployment",
            "deployment",
            "deployments",
            "deployments.apps",
            "DEPLOY.apps",
        ] {
            let (f, warnings) = resolve(&[name], &[]).expect(name);
            assert!(
                f.matches("deployments", "apps") && !f.matches("configmaps", ""),
                "{name}"
            );
            assert!(warnings.is_empty());
        }
        let (f, _) = resolve(&["cm", "widget.example.com"], &[]).expect("resolves");
        assert!(f.matches("configmaps", "") && f.matches("widgets", "example.com"));
        // A name two groups share takes both, as an include of the plural did before.
        let (f, _) = resolve(&["ev"], &[]).expect("resolves");
        assert!(f.matches("events", "") && f.matches("events", "events.k8s.io"));
        // Globs are kept as they are.
        let (f, _) = resolve(&["*.example.com"], &[]).expect("resolves");
        assert!(f.matches("widgets", "example.com") && !f.matches("secrets", ""));
        // Exclusions resolve too: `secret` once excluded nothing.
        let (f, _) = resolve(&[], &["Secret"]).expect("resolves");
        assert!(!f.matches("secrets", "") && f.matches("configmaps", ""));
        // kubectl's resource.version.group, and a trailing comma's empty name (dropped; it
        // once matched every type whose singular name discovery left empty).
        let (f, _) = resolve(&["deployments.v1.apps", ""], &[" "]).expect("resolves");
        assert!(f.matches("deployments", "apps") && !f.matches("configmaps", ""));
        // (Older servers, and a backup's stored types, give no singular names.)
        let nameless = [
            record("", "Secret", "secrets", "", &[]),
            record("", "ConfigMap", "configmaps", "", &[]),
        ];
        let nameless: Vec<&ResourceRecord> = nameless.iter().collect();
        let (f, _) = ResourceFilter::new(&s(&["secrets", ""]), &[])
            .expect("valid")
            .resolve(&nameless)
            .expect("resolves");
        assert!(f.matches("secrets", "") && !f.matches("configmaps", ""));
        // A type of a group this cluster lacks: a warning, and still nothing else taken.
        let (f, warnings) = resolve(&["certificates.cert-manager.io"], &[]).expect("a warning");
        assert!(warnings[0].contains("cert-manager.io") && !f.matches("configmaps", ""));
        // A typo: an error to include, a warning to exclude.
        let e = resolve(&["deploymnets"], &[]).expect_err("unknown");
        assert!(
            e.to_string().contains("deploymnets") && e.to_string().contains("api-resources"),
            "{e}"
        );
        let (f, warnings) = resolve(&[], &["sercrets"]).expect("a warning only");
        assert!(
            f.matches("secrets", "") && warnings[0].contains("sercrets"),
            "{warnings:?}"
        );
    }

    #[test]
    fn bad_glob_names_the_field() {
        let e = NamespaceFilter::new(&s(&["[a"]), &[]).expect_err("invalid");
        assert!(e.to_string().contains("includedNamespaces"), "{e}");
    }
}
