//! Name references: when an object's name changed (prefix, suffix, hash), fields that named it
//! are updated, following kustomize's nameReference configuration.

use std::collections::HashMap;

use super::KustomizeError;
use super::fieldspec::{NameRef, TransformerConfig, visit_field};
use super::resource::{Gvk, Resource};
use crate::yaml::{Map, Value};

fn target_matches(t: &Gvk, g: &Gvk) -> bool {
    (t.group.is_empty() || t.group == g.group)
        && (t.version.is_empty() || t.version == g.version)
        && t.kind == g.kind
}

struct Candidate {
    idx: usize,
    names: Vec<(String, String)>,
    cur_name: String,
    cur_ns: String,
    lineage: Vec<usize>,
    cluster: bool,
}

fn common_lineage(a: &[usize], b: &[usize]) -> usize {
    a.iter()
        .rev()
        .zip(b.iter().rev())
        .take_while(|(x, y)| x == y)
        .count()
}

/// The candidates of one rule, indexed by every name they had.
struct Candidates {
    all: Vec<Candidate>,
    by_name: HashMap<String, Vec<usize>>,
}

impl Candidates {
    fn new(all: Vec<Candidate>) -> Self {
        let mut by_name: HashMap<String, Vec<usize>> = HashMap::new();
        for (i, c) in all.iter().enumerate() {
            for (n, _) in &c.names {
                let v = by_name.entry(n.clone()).or_default();
                if v.last() != Some(&i) {
                    v.push(i);
                }
            }
        }
        Candidates { all, by_name }
    }
}

/// Picks the object a referring field means: the one of the target kind that had the name,
/// in the referrer's namespace, sharing the most of the referrer's build path.
fn pick<'a>(
    cands: &'a Candidates,
    referrer_idx: usize,
    name: &str,
    ns: Option<&str>,
    lineage: &[usize],
) -> Option<&'a Candidate> {
    let ids = cands.by_name.get(name)?;
    let mut best: Option<(&Candidate, usize)> = None;
    for &i in ids {
        let c = &cands.all[i];
        if c.idx == referrer_idx {
            continue;
        }
        let fits = c.names.iter().any(|(n, cns)| {
            n == name
                && (c.cluster
                    || ns.is_none()
                    || ns == Some(cns.as_str())
                    || ns == Some(c.cur_ns.as_str()))
        });
        if !fits {
            continue;
        }
        let score = common_lineage(&c.lineage, lineage);
        if best.is_none_or(|(_, b)| score > b) {
            best = Some((c, score));
        }
    }
    best.map(|(c, _)| c)
}

fn ns_key(ns: &str) -> String {
    if ns.is_empty() {
        "default".to_string()
    } else {
        ns.to_string()
    }
}

/// Updates every referring field in `resources`.
pub(crate) fn fix(
    resources: &mut [Resource],
    config: &TransformerConfig,
) -> Result<(), KustomizeError> {
    for r in resources.iter() {
        if !matches!(r.kind(), "RoleBinding" | "ClusterRoleBinding") {
            continue;
        }
        let subjects = r.value.get("subjects").and_then(Value::as_seq);
        for s in subjects.into_iter().flatten() {
            let Some(sm) = s.as_map() else { continue };
            if sm.get("kind").and_then(Value::as_str) == Some("ServiceAccount")
                && matches!(sm.get("namespace"), Some(Value::Null))
            {
                return Err(KustomizeError::transform(
                    "nameReference",
                    format!(
                        "Invalid Input: namespace is blank for resource {:?}",
                        r.id_string()
                    ),
                ));
            }
        }
    }
    let gvks: Vec<Gvk> = resources.iter().map(Resource::gvk).collect();
    for rule in &config.name_reference {
        fix_rule(resources, &gvks, rule)?;
    }
    Ok(())
}

/// `gvks[i]` is the type of `resources[i]` (name references change names only).
fn fix_rule(
    resources: &mut [Resource],
    gvks: &[Gvk],
    rule: &NameRef,
) -> Result<(), KustomizeError> {
    let cands: Vec<Candidate> = resources
        .iter()
        .enumerate()
        .filter(|(i, _)| target_matches(&rule.target, &gvks[*i]))
        .map(|(idx, r)| Candidate {
            idx,
            names: r
                .all_names()
                .map(|(n, ns)| (n.to_string(), ns_key(ns)))
                .collect(),
            cur_name: r.name().to_string(),
            cur_ns: ns_key(r.namespace()),
            lineage: r.lineage.clone(),
            cluster: gvks[idx].is_cluster_scoped(),
        })
        .collect();
    if cands.is_empty() {
        return Ok(());
    }
    // Nothing to do when no candidate was ever renamed or moved.
    if cands.iter().all(|c| {
        c.names
            .iter()
            .all(|(n, ns)| *n == c.cur_name && *ns == c.cur_ns)
    }) {
        return Ok(());
    }
    let cands = Candidates::new(cands);
    let target_kind = rule.target.kind.clone();
    for (ri, r) in resources.iter_mut().enumerate() {
        let gvk = &gvks[ri];
        let specs: Vec<_> = rule.referrers.iter().filter(|f| f.matches(gvk)).collect();
        if specs.is_empty() {
            continue;
        }
        let ref_ns = if gvk.is_cluster_scoped() {
            None
        } else {
            Some(ns_key(r.namespace()))
        };
        let lineage = r.lineage.clone();
        for fs in specs {
            let mut f = |m: &mut Map, key: &str| -> Result<(), String> {
                if let Some(Value::Str(k)) = m.get("kind")
                    && key == "name"
                    && *k != target_kind
                {
                    return Ok(());
                }
                let sibling_ns = m.get("namespace").and_then(Value::as_str).map(ns_key);
                let ns = sibling_ns.clone().or(ref_ns.clone());
                let Some(v) = m.get_mut(key) else {
                    return Ok(());
                };
                update_value(v, &cands, ri, ns.as_deref(), &lineage, &target_kind);
                Ok(())
            };
            visit_field(&mut r.value, &fs.path, false, &mut f)
                .map_err(|e| KustomizeError::transform("nameReference", e))?;
        }
    }
    Ok(())
}

fn update_value(
    v: &mut Value,
    cands: &Candidates,
    ri: usize,
    ns: Option<&str>,
    lineage: &[usize],
    target_kind: &str,
) {
    match v {
        Value::Str(s) => {
            if let Some(c) = pick(cands, ri, s, ns, lineage) {
                *s = c.cur_name.clone();
            }
        }
        Value::Seq(items) => {
            for it in items {
                update_value(it, cands, ri, ns, lineage, target_kind);
            }
        }
        Value::Map(m) => {
            // An object reference: {kind?, name, namespace?} (RBAC subjects, webhook services).
            if let Some(Value::Str(k)) = m.get("kind")
                && k != target_kind
            {
                return;
            }
            let own_ns = m.get("namespace").and_then(Value::as_str).map(ns_key);
            let ns = own_ns.as_deref().or(ns);
            let Some(Value::Str(name)) = m.get("name") else {
                return;
            };
            if let Some(c) = pick(cands, ri, name, ns, lineage) {
                let new_name = c.cur_name.clone();
                let new_ns = c.cur_ns.clone();
                let had_ns = m.contains_key("namespace");
                m.insert("name".into(), Value::Str(new_name));
                if had_ns && !c.cluster {
                    m.insert("namespace".into(), Value::Str(new_ns));
                }
            }
        }
        _ => {}
    }
}
