//! Values that cannot be in the units the recommenders and plans assume. Memory whose highest
//! value is under 1 MiB is not bytes (no container's working set is that small: a utilisation
//! ratio or a percentage mapped to `memory`); CPU above 4,096 cores is not cores (millicores,
//! or a counter not turned into a rate). KRR's and VPA's floors (100 MiB, 250 MiB, 25m) and
//! the plans' floors and steps would then decide every comparison, so those series are left
//! out of them, and the stages say which.

use std::collections::{BTreeMap, BTreeSet};

use applearner_contracts::Resource;
use applearner_pipeline::Summary;

use crate::recommend::MIB;
use crate::table::Usage;

const MIN_BYTES: f64 = MIB;
const MAX_CORES: f64 = 4096.0;

/// `(key, resource)` of every series whose values cannot be cores or bytes.
pub fn implausible(usage: &BTreeMap<String, Usage>) -> BTreeSet<(String, Resource)> {
    let mut out = BTreeSet::new();
    for (key, u) in usage {
        let highest = |v: &[f64]| v.iter().copied().filter(|x| x.is_finite()).reduce(f64::max);
        if highest(&u.cpu.values).is_some_and(|h| h > MAX_CORES) {
            out.insert((key.clone(), Resource::Cpu));
        }
        if highest(&u.memory.values).is_some_and(|h| h < MIN_BYTES) {
            out.insert((key.clone(), Resource::Memory));
        }
    }
    out
}

/// The summary entries `cpu_not_cores` and `memory_not_bytes` (the keys of each), warned
/// about where there are any.
pub fn said(implausible: &BTreeSet<(String, Resource)>) -> Summary {
    [(Resource::Cpu, "cpu_not_cores"), (Resource::Memory, "memory_not_bytes")]
        .into_iter()
        .map(|(resource, name)| {
            let keys: Vec<String> =
                implausible.iter().filter(|(_, r)| *r == resource).map(|(k, _)| k.clone()).collect();
            if !keys.is_empty() {
                tracing::warn!(
                    "{} series have {} values that cannot be {}: left out of the comparisons with KRR and VPA \
                     and of the {} plans ({}); map them to the right role or convert them",
                    keys.len(),
                    resource.name(),
                    if resource == Resource::Cpu { "cores" } else { "bytes" },
                    resource.name(),
                    keys.iter().take(5).map(|k| k.as_str()).collect::<Vec<_>>().join(", ")
                );
            }
            (name.to_string(), keys.into())
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::series::Series;

    /// Regression: a machine trace's utilisation ratios (0–1) mapped to `memory` made KRR's
    /// and VPA's byte floors decide every comparison (100 % slack, a MASE of 5.7 × 10⁹). Such
    /// series are found, and so are CPU values that cannot be cores.
    #[test]
    fn values_that_cannot_be_bytes_or_cores_are_found() {
        let series = |v: &[f64]| Series::new(v.iter().enumerate().map(|(i, v)| (i as i64, *v)).collect());
        let usage = |cpu: &[f64], memory: &[f64]| Usage { cpu: series(cpu), memory: series(memory), replicas: 1 };
        let all = BTreeMap::from([
            ("vm/ratio".to_string(), usage(&[0.2, 0.4], &[0.31, 0.92])),
            ("ns/web/app".to_string(), usage(&[0.2, 0.4], &[64.0 * MIB, 80.0 * MIB])),
            ("ns/milli/app".to_string(), usage(&[250.0, 12_000.0], &[64.0 * MIB, 80.0 * MIB])),
        ]);
        let found = implausible(&all);
        assert_eq!(
            found.into_iter().collect::<Vec<_>>(),
            [("ns/milli/app".to_string(), Resource::Cpu), ("vm/ratio".to_string(), Resource::Memory)]
        );
    }
}
