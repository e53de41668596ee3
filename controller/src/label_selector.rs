//! Kubernetes label selectors in their string form (`app=web,tier!=cache`, `env in (a,b)`,
//! `!legacy`), matched locally: the volume planner decides over claims already read, a
//! restore over the objects of a backup.
//! Grammar: k8s.io/apimachinery `labels.Parse`.

use std::collections::BTreeMap;

/// One requirement of a selector.
#[derive(Debug, Clone, PartialEq, Eq)]
enum Requirement {
    /// `k=v`, `k==v`, `k in (v1,v2)`.
    In(String, Vec<String>),
    /// `k!=v`, `k notin (v1,v2)` (a missing label matches).
    NotIn(String, Vec<String>),
    /// `k`.
    Exists(String),
    /// `!k`.
    DoesNotExist(String),
}

/// A label selector that does not parse; the message quotes the requirement that is wrong.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{0}")]
pub struct SelectorError(String);

/// A parsed label selector; the empty selector matches everything.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct LabelSelector {
    requirements: Vec<Requirement>,
}

impl LabelSelector {
    /// Parses the string form; the error names the part that is wrong.
    pub fn parse(text: &str) -> Result<Self, SelectorError> {
        let mut requirements = Vec::new();
        for part in split_top_level(text) {
            let part = part.trim();
            if part.is_empty() {
                continue;
            }
            requirements.push(requirement(part).map_err(SelectorError)?);
        }
        Ok(Self { requirements })
    }

    /// True when `labels` satisfy every requirement.
    pub fn matches(&self, labels: &BTreeMap<String, String>) -> bool {
        self.requirements.iter().all(|r| match r {
            Requirement::In(k, vs) => labels.get(k).is_some_and(|v| vs.contains(v)),
            Requirement::NotIn(k, vs) => labels.get(k).is_none_or(|v| !vs.contains(v)),
            Requirement::Exists(k) => labels.contains_key(k),
            Requirement::DoesNotExist(k) => !labels.contains_key(k),
        })
    }
}

/// Splits on commas outside parentheses.
fn split_top_level(text: &str) -> Vec<&str> {
    let (mut depth, mut start, mut parts) = (0i32, 0, Vec::new());
    for (i, c) in text.char_indices() {
        match c {
            '(' => depth += 1,
            ')' => depth -= 1,
            ',' if depth == 0 => {
                parts.push(&text[start..i]);
                start = i + 1;
            }
            _ => {}
        }
    }
    parts.push(&text[start..]);
    parts
}

fn requirement(part: &str) -> Result<Requirement, String> {
    let bad = |why: &str| format!("label selector `{part}`: {why}");
    if let Some(key) = part.strip_prefix('!') {
        return Ok(Requirement::DoesNotExist(
            key_of(key.trim()).map_err(|e| bad(&e))?,
        ));
    }
    for (op, negate) in [("!=", true), ("==", false), ("=", false)] {
        if let Some((k, v)) = part.split_once(op) {
            let (k, v) = (key_of(k.trim()).map_err(|e| bad(&e))?, v.trim().to_string());
            return Ok(if negate {
                Requirement::NotIn(k, vec![v])
            } else {
                Requirement::In(k, vec![v])
            });
        }
    }
    let words: Vec<&str> = part.splitn(2, char::is_whitespace).collect();
    if let [key, rest] = words[..] {
        let rest = rest.trim_start();
        let (negate, list) = if let Some(l) = rest.strip_prefix("notin") {
            (true, l)
        } else if let Some(l) = rest.strip_prefix("in") {
            (false, l)
        } else {
            return Err(bad("expected `in (…)` or `notin (…)` after the key"));
        };
        let list = list
            .trim()
            .strip_prefix('(')
            .and_then(|l| l.strip_suffix(')'))
            .ok_or_else(|| bad("the values go in parentheses: `key in (a,b)`"))?;
        let values: Vec<String> = list.split(',').map(|v| v.trim().to_string()).collect();
        let key = key_of(key).map_err(|e| bad(&e))?;
        return Ok(if negate {
            Requirement::NotIn(key, values)
        } else {
            Requirement::In(key, values)
        });
    }
    Ok(Requirement::Exists(key_of(part).map_err(|e| bad(&e))?))
}

fn key_of(k: &str) -> Result<String, String> {
    let ok =
        !k.is_empty() && k.len() <= 317 && k.chars().all(|c| c.is_ascii_alphanumeric() || "-_./".contains(c));
    if ok {
        Ok(k.to_string())
    } else {
        Err(format!("`{k}` is not a label key"))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn labels(pairs: &[(&str, &str)]) -> BTreeMap<String, String> {
        pairs
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect()
    }

    #[test]
    fn every_form_matches_as_kubernetes_does() {
        let l = labels(&[("app", "db"), ("tier", "data")]);
        let yes = [
            "",
            "app=db",
            "app==db",
            "app=db,tier!=cache",
            "app in (db, web)",
            "tier notin (cache)",
            "app",
            "!legacy",
            "missing!=x",
        ];
        for s in yes {
            assert!(LabelSelector::parse(s).unwrap().matches(&l), "{s}");
        }
        let no = [
            "app=web",
            "app notin (db)",
            "legacy",
            "!app",
            "app in (web),tier=data",
        ];
        for s in no {
            assert!(!LabelSelector::parse(s).unwrap().matches(&l), "{s}");
        }
    }

    #[test]
    fn bad_selectors_name_the_part() {
        let e = LabelSelector::parse("app=db,tier within (a)").unwrap_err();
        assert!(e.to_string().contains("tier within (a)"), "{e}");
        assert!(LabelSelector::parse("app in a,b").is_err());
        assert!(LabelSelector::parse("a b=c").is_err());
    }
}
