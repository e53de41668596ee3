//! Label and field selectors, parsed from query strings and matched against JSON objects.

use serde_json::Value;

use super::registry::ResourceType;
use super::status::ApiError;

#[derive(Debug, Clone, PartialEq)]
enum Op {
    Eq(String),
    NotEq(String),
    In(Vec<String>),
    NotIn(Vec<String>),
    Exists,
    NotExists,
}

#[derive(Debug, Clone, PartialEq)]
struct Requirement {
    key: String,
    op: Op,
}

impl Requirement {
    fn matches(&self, value: Option<&str>) -> bool {
        match (&self.op, value) {
            (Op::Eq(v), Some(x)) => v == x,
            (Op::Eq(_), None) => false,
            (Op::NotEq(v), x) => x != Some(v.as_str()),
            (Op::In(vs), Some(x)) => vs.iter().any(|v| v == x),
            (Op::In(_), None) => false,
            (Op::NotIn(vs), x) => x.is_none_or(|x| !vs.iter().any(|v| v == x)),
            (Op::Exists, x) => x.is_some(),
            (Op::NotExists, x) => x.is_none(),
        }
    }
}

/// Splits on commas that are not inside parentheses.
fn split_top(s: &str) -> Vec<&str> {
    let mut out = Vec::new();
    let (mut depth, mut start) = (0i32, 0usize);
    for (i, c) in s.char_indices() {
        match c {
            '(' => depth += 1,
            ')' => depth -= 1,
            ',' if depth == 0 => {
                out.push(&s[start..i]);
                start = i + 1;
            }
            _ => {}
        }
    }
    out.push(&s[start..]);
    out
}

fn set_values(s: &str) -> Result<Vec<String>, ApiError> {
    let inner = s
        .trim()
        .strip_prefix('(')
        .and_then(|s| s.strip_suffix(')'))
        .ok_or_else(|| ApiError::bad_request(format!("unable to parse requirement: {s}")))?;
    Ok(inner.split(',').map(|v| v.trim().to_string()).collect())
}

fn parse_one(term: &str, set_based: bool) -> Result<Requirement, ApiError> {
    let t = term.trim();
    let bad = || ApiError::bad_request(format!("unable to parse requirement: {t}"));
    if set_based {
        if let Some(key) = t.strip_prefix('!') {
            return Ok(Requirement {
                key: key.trim().into(),
                op: Op::NotExists,
            });
        }
        for (word, notin) in [(" notin ", true), (" in ", false)] {
            if let Some(i) = t.find(word) {
                let vals = set_values(&t[i + word.len()..])?;
                let key = t[..i].trim().to_string();
                let op = if notin { Op::NotIn(vals) } else { Op::In(vals) };
                return Ok(Requirement { key, op });
            }
        }
    }
    for (sym, neg) in [("!=", true), ("==", false), ("=", false)] {
        if let Some(i) = t.find(sym) {
            let key = t[..i].trim().to_string();
            let val = t[i + sym.len()..].trim().to_string();
            if key.is_empty() {
                return Err(bad());
            }
            let op = if neg { Op::NotEq(val) } else { Op::Eq(val) };
            return Ok(Requirement { key, op });
        }
    }
    if set_based && !t.is_empty() && !t.contains(char::is_whitespace) {
        return Ok(Requirement {
            key: t.into(),
            op: Op::Exists,
        });
    }
    Err(bad())
}

/// A parsed `labelSelector`.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct LabelSelector(Vec<Requirement>);

impl LabelSelector {
    /// Whether it selects everything (no requirements).
    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }

    /// Parses `a=b,c!=d,e in (x,y),f notin (z),g,!h`.
    pub fn parse(s: &str) -> Result<Self, ApiError> {
        if s.trim().is_empty() {
            return Ok(Self::default());
        }
        split_top(s)
            .into_iter()
            .map(|t| parse_one(t, true))
            .collect::<Result<_, _>>()
            .map(Self)
    }

    /// Whether `obj`'s labels satisfy every requirement.
    pub fn matches(&self, obj: &Value) -> bool {
        let labels = &obj["metadata"]["labels"];
        self.0
            .iter()
            .all(|r| r.matches(labels.get(&r.key).and_then(Value::as_str)))
    }
}

/// A parsed `fieldSelector`, checked against the fields the resource supports.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct FieldSelector(Vec<Requirement>);

impl FieldSelector {
    /// Whether it selects everything (no requirements).
    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }

    /// Parses `metadata.name=x,metadata.namespace!=y`; unsupported fields are a 400.
    pub fn parse(s: &str, rt: &ResourceType) -> Result<Self, ApiError> {
        if s.trim().is_empty() {
            return Ok(Self::default());
        }
        let reqs: Vec<Requirement> = split_top(s)
            .into_iter()
            .map(|t| parse_one(t, false))
            .collect::<Result<_, _>>()?;
        for r in &reqs {
            let known = r.key == "metadata.name"
                || (r.key == "metadata.namespace" && rt.namespaced)
                || rt.fields.contains(&r.key);
            if !known {
                return Err(ApiError::bad_request(format!(
                    "field label not supported: {}",
                    r.key
                )));
            }
        }
        Ok(Self(reqs))
    }

    /// Whether `obj` satisfies every requirement (a missing field counts as "").
    pub fn matches(&self, obj: &Value) -> bool {
        self.0.iter().all(|r| {
            let v = r.key.split('.').fold(obj, |v, k| &v[k]);
            r.matches(Some(v.as_str().unwrap_or("")))
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn labels() {
        let o = json!({"metadata": {"labels": {"a": "1", "b": "2"}}});
        let ok = |s: &str| LabelSelector::parse(s).map(|l| l.matches(&o));
        assert_eq!(ok("a=1").ok(), Some(true));
        assert_eq!(ok("a=1,b!=2").ok(), Some(false));
        assert_eq!(ok("a in (1,3),!c").ok(), Some(true));
        assert_eq!(ok("b notin (2)").ok(), Some(false));
        assert_eq!(ok("b").ok(), Some(true));
        assert!(LabelSelector::parse("a b c").is_err());
    }
}
