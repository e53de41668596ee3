//! Which namespaces and resources a backup or restore covers: include/exclude glob lists,
//! as Velero users write them.

use globset::{Glob, GlobSet, GlobSetBuilder};

use super::ObjectsError;
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

/// Resource types, named `plural` or `plural.group` (`deployments`, `deployments.apps`).
#[derive(Debug, Clone, Default)]
pub struct ResourceFilter {
    include: Option<GlobSet>,
    exclude: Option<GlobSet>,
}

impl ResourceFilter {
    /// Builds it; an empty include list means every resource.
    pub fn new(include: &[String], exclude: &[String]) -> Result<Self, ObjectsError> {
        Ok(Self {
            include: globs("includedResources", include)?,
            exclude: globs("excludedResources", exclude)?,
        })
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

    #[test]
    fn bad_glob_names_the_field() {
        let e = NamespaceFilter::new(&s(&["[a"]), &[]).expect_err("invalid");
        assert!(e.to_string().contains("includedNamespaces"), "{e}");
    }
}
