//! What one series is: the label set that tells it apart, and the readable key it is
//! learned and planned under.
//!
//! A Prometheus series is one label set of one metric. Cleaning keys series by a few labels
//! (namespace/pod/container, or the workload instead of the pod, or labels the config
//! names); series that agree on those but differ in another label (node metrics by
//! `instance`, VMs by `machine_id`, two metrics mapped to one role) are still distinct, so
//! the labels that differ within such a collision are added to their key as `name=value`.
//! Only `group: {by: labels}` merges series on purpose: there the named labels are the key.
//! A series with no namespace, pod or container (a node or VM from node_exporter or
//! cAdvisor's root cgroup) is keyed by all its labels as `name=value`: a node's key starts
//! with a label, never with a namespace ([`is_node`]).
//!
//! The allocation and pain series (requests, limits, OOM kills, throttling) are not learned:
//! [`align`] finds the key of the usage series each describes.

use std::collections::{BTreeMap, BTreeSet};

use crate::resample::{GroupBy, Plan, Scope, workload_of};

/// One input series of one role, with all its labels (`__name__` as `metric`).
#[derive(Debug, Clone)]
pub struct SeriesLabels {
    pub series_id: u64,
    pub role: String,
    pub metric: String,
    pub labels: BTreeMap<String, String>,
}

/// Where a series belongs: its key and the values of the key columns of the output.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Identity {
    pub series_id: u64,
    pub key: String,
    pub columns: Vec<Option<String>>,
    /// The labels added to the key to tell it apart (`metric`: the metric name).
    pub extra: Vec<(String, String)>,
}

pub use applearner_contracts::tables::resampled::is_node;

/// The output's label columns for a grouping.
pub fn key_columns(by: GroupBy, labels: &[String]) -> Vec<String> {
    match by {
        GroupBy::Series => ["namespace", "pod", "container"].map(String::from).to_vec(),
        GroupBy::Workload => ["namespace", "workload", "container"].map(String::from).to_vec(),
        GroupBy::Labels => labels.to_vec(),
    }
}

/// The identity of every series. With `by: series` or `by: workload`, series that share
/// namespace, pod and container but not their other labels get those labels in their key.
pub fn identify(series: &[SeriesLabels], by: GroupBy, labels: &[String]) -> Vec<Identity> {
    let extra = match by {
        GroupBy::Labels => BTreeMap::new(),
        GroupBy::Series | GroupBy::Workload => distinguishing(series),
    };
    series
        .iter()
        .map(|s| {
            let columns = base(s, by, labels);
            let mut extra: Vec<(String, String)> = extra
                .get(&s.series_id)
                .into_iter()
                .flatten()
                .filter_map(|name| {
                    let value = if name == "metric" { Some(s.metric.clone()) } else { s.labels.get(name).cloned() };
                    Some((name.clone(), value?))
                })
                .collect();
            let node = by != GroupBy::Labels && columns.iter().all(Option::is_none);
            if node && extra.is_empty() {
                extra = s.labels.iter().map(|(k, v)| (k.clone(), v.clone())).collect();
            }
            let mut parts: Vec<String> = columns.iter().flatten().cloned().collect();
            parts.extend(extra.iter().map(|(name, value)| format!("{name}={value}")));
            Identity { series_id: s.series_id, key: parts.join("/"), columns, extra }
        })
        .collect()
}

/// The values of the key columns of one series.
fn base(s: &SeriesLabels, by: GroupBy, labels: &[String]) -> Vec<Option<String>> {
    let get = |name: &str| s.labels.get(name).cloned();
    match by {
        GroupBy::Series => vec![get("namespace"), get("pod"), get("container")],
        GroupBy::Workload => vec![get("namespace"), get("pod").map(|p| workload_of(&p).to_string()), get("container")],
        GroupBy::Labels => labels.iter().map(|l| get(l)).collect(),
    }
}

/// Where an allocation or pain series belongs.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Aligned {
    /// The key of the usage series it describes.
    Key(String),
    /// No usage series has its namespace, pod (workload) and container.
    NoUsage,
    /// Several do, told apart by labels it lacks (e.g. `node`): never merged, counted.
    Ambiguous,
}

/// The key each of `others` (allocation series, model inputs) belongs to among the usage
/// `identities`: the usage series with the same key columns, and, where several keys share
/// them, the one whose distinguishing labels it carries with the same values. A series
/// without a `container` label (a pod's, as cAdvisor's network counters are) describes its
/// pod's containers: the one there is, or several (ambiguous).
pub fn align(identities: &[Identity], others: &[&SeriesLabels], by: GroupBy, labels: &[String]) -> Vec<Aligned> {
    let mut by_columns: BTreeMap<&[Option<String>], Vec<&Identity>> = BTreeMap::new();
    let mut by_pod: BTreeMap<&[Option<String>], Vec<&Identity>> = BTreeMap::new();
    for i in identities {
        by_columns.entry(&i.columns).or_default().push(i);
        if by != GroupBy::Labels {
            by_pod.entry(&i.columns[..2]).or_default().push(i);
        }
    }
    others
        .iter()
        .map(|s| {
            let columns = base(s, by, labels);
            let fits = |i: &&&Identity| {
                i.extra.iter().all(|(name, value)| name == "metric" || s.labels.get(name).is_none_or(|v| v == value))
            };
            let pod_level = by != GroupBy::Labels && !s.labels.contains_key("container");
            let candidates = match pod_level {
                true => by_pod.get(&columns[..2]),
                false => by_columns.get(columns.as_slice()),
            };
            let keys: BTreeSet<&str> = candidates.into_iter().flatten().filter(fits).map(|i| i.key.as_str()).collect();
            match keys.len() {
                0 => Aligned::NoUsage,
                1 => Aligned::Key(keys.into_iter().next().expect("one").to_string()),
                _ => Aligned::Ambiguous,
            }
        })
        .collect()
}

/// Series placed on the usage keys of a run: those on its keys, and the counts of the
/// series it answers for (placed on its keys, or left out and its by their own id).
pub struct Placed<'s> {
    pub kept: Vec<(&'s SeriesLabels, String)>,
    pub series: u64,
    pub without_usage: u64,
    pub ambiguous: u64,
}

/// `others` placed on the keys of the usage `identities` by [`align`], those of the keys in
/// `scope`. A shard counts the series it cannot place by their own id, so that the shards'
/// counts add up to the unsharded ones.
pub fn place<'s>(identities: &[Identity], others: Vec<&'s SeriesLabels>, plan: &Plan, scope: Scope<'_>) -> Placed<'s> {
    let aligned = align(identities, &others, plan.group.by, &plan.group.labels);
    let mut out = Placed { kept: Vec::new(), series: 0, without_usage: 0, ambiguous: 0 };
    for (s, a) in others.into_iter().zip(aligned) {
        let own = s.series_id.to_string();
        match a {
            Aligned::Key(key) if scope.holds(&key) => out.kept.push((s, key)),
            Aligned::NoUsage if scope.holds(&own) => out.without_usage += 1,
            Aligned::Ambiguous if scope.holds(&own) => out.ambiguous += 1,
            _ => continue,
        }
        out.series += 1;
    }
    out
}

/// For each series in a collision (same role, namespace, pod and container as another), the
/// label names whose values differ among the series it collides with, `metric` when the
/// metric names differ. The names apply to every role of the collision so that CPU and
/// memory of one container still meet on one key.
fn distinguishing(series: &[SeriesLabels]) -> BTreeMap<u64, BTreeSet<String>> {
    let pod_key = |s: &SeriesLabels| ["namespace", "pod", "container"].map(|l| s.labels.get(l).cloned());
    let mut collisions: BTreeMap<_, Vec<&SeriesLabels>> = BTreeMap::new();
    for s in series {
        collisions.entry(pod_key(s)).or_default().push(s);
    }
    let mut out = BTreeMap::new();
    for members in collisions.values() {
        let mut names = BTreeSet::new();
        let roles: BTreeSet<&str> = members.iter().map(|s| s.role.as_str()).collect();
        for role in roles {
            let same_role: Vec<_> = members.iter().filter(|s| s.role == role).collect();
            if same_role.len() < 2 {
                continue;
            }
            let all_names: BTreeSet<&String> = same_role.iter().flat_map(|s| s.labels.keys()).collect();
            for name in all_names {
                let values: BTreeSet<Option<&String>> = same_role.iter().map(|s| s.labels.get(name)).collect();
                if values.len() > 1 {
                    names.insert(name.clone());
                }
            }
            if same_role.iter().map(|s| &s.metric).collect::<BTreeSet<_>>().len() > 1 {
                names.insert("metric".to_string());
            }
        }
        if !names.is_empty() {
            for s in members {
                out.insert(s.series_id, names.clone());
            }
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn s(id: u64, role: &str, labels: &[(&str, &str)]) -> SeriesLabels {
        SeriesLabels {
            series_id: id,
            role: role.into(),
            metric: format!("{role}_metric"),
            labels: labels.iter().map(|(k, v)| (k.to_string(), v.to_string())).collect(),
        }
    }

    fn keys(series: &[SeriesLabels], by: GroupBy) -> Vec<String> {
        identify(series, by, &[]).into_iter().map(|i| i.key).collect()
    }

    #[test]
    fn container_series_keep_their_short_keys() {
        let series = [
            s(1, "cpu", &[("namespace", "ns"), ("pod", "web-5f55b6cf68-77cfw"), ("container", "app"), ("node", "n1")]),
            s(2, "memory", &[("namespace", "ns"), ("pod", "web-5f55b6cf68-77cfw"), ("container", "app")]),
            s(3, "cpu", &[("namespace", "ns"), ("pod", "web-5f55b6cf68-jpzbd"), ("container", "app"), ("node", "n2")]),
        ];
        assert_eq!(
            keys(&series, GroupBy::Series),
            ["ns/web-5f55b6cf68-77cfw/app", "ns/web-5f55b6cf68-77cfw/app", "ns/web-5f55b6cf68-jpzbd/app"]
        );
        assert_eq!(keys(&series, GroupBy::Workload), ["ns/web/app"; 3]);
    }

    #[test]
    fn series_that_differ_only_in_another_label_stay_apart() {
        let series = [
            s(1, "cpu", &[("instance", "node-a:9100"), ("job", "node")]),
            s(2, "cpu", &[("instance", "node-b:9100"), ("job", "node")]),
            s(3, "memory", &[("instance", "node-a:9100"), ("job", "node")]),
            s(4, "cpu", &[("machine_id", "m1")]),
            s(5, "cpu", &[("machine_id", "m2")]),
        ];
        let k = keys(&series, GroupBy::Series);
        assert_eq!(k[0], "instance=node-a:9100/job=node");
        assert_eq!(k[2], k[0], "CPU and memory of one node meet on one key");
        assert_eq!(k[3], "machine_id=m1");
        assert_eq!(k.iter().collect::<BTreeSet<_>>().len(), 4);
        assert_eq!(keys(&series, GroupBy::Workload), k);
    }

    #[test]
    fn two_metrics_of_one_role_are_two_series() {
        let mut rss = s(2, "memory", &[("pod", "p")]);
        rss.metric = "container_memory_rss".into();
        let series = [s(1, "memory", &[("pod", "p")]), rss];
        assert_eq!(keys(&series, GroupBy::Series), ["p/metric=memory_metric", "p/metric=container_memory_rss"]);
    }

    #[test]
    fn grouping_by_labels_merges_on_purpose_and_reads_any_label() {
        let series = [
            s(1, "cpu", &[("machine_id", "m1"), ("rack", "r1")]),
            s(2, "cpu", &[("machine_id", "m2"), ("rack", "r1")]),
        ];
        let ids = identify(&series, GroupBy::Labels, &["rack".to_string()]);
        assert_eq!(ids[0].key, "r1");
        assert_eq!(ids[1].key, "r1");
        assert_eq!(ids[0].columns, [Some("r1".to_string())]);
    }

    #[test]
    fn a_lone_node_is_keyed_by_its_labels_and_known_as_a_node() {
        let series = [
            s(1, "cpu", &[("instance", "node-a:9100"), ("job", "node")]),
            s(2, "cpu", &[("namespace", "ns"), ("pod", "p"), ("container", "c")]),
        ];
        let k = keys(&series, GroupBy::Series);
        assert_eq!(k, ["instance=node-a:9100/job=node", "ns/p/c"]);
        assert!(is_node(&k[0]) && !is_node(&k[1]));
        // A capacity series of the node, with labels of its own, finds the node.
        let ids = identify(&series, GroupBy::Series, &[]);
        let capacity = s(3, "cpu_request", &[("instance", "node-a:9100"), ("resource", "cpu")]);
        assert_eq!(align(&ids, &[&capacity], GroupBy::Series, &[]), [Aligned::Key(k[0].clone())]);
    }
}
