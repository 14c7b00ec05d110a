//! The limit: plans made with perfect foresight of the test part's usage, on the same
//! change budget. Per workload the line is set per block (one block per change allowed),
//! and the steps it may lie below usage (the risk × its steps) go greedily where they save
//! the most slack each; so the true optimum is at least this good. Rounding up to the
//! policy's step can only put fewer steps above the line.

use std::cmp::Ordering;
use std::collections::BinaryHeap;

use super::*;

/// A possible lowering of one block's line: to `values[to]`, putting `cost` more steps above.
struct Lowering {
    per_step: f64,
    block: usize,
    to: usize,
    cost: usize,
}

impl PartialEq for Lowering {
    fn eq(&self, other: &Self) -> bool {
        self.cmp(other) == Ordering::Equal
    }
}
impl Eq for Lowering {}
impl PartialOrd for Lowering {
    fn partial_cmp(&self, other: &Self) -> Option<Ordering> {
        Some(self.cmp(other))
    }
}
impl Ord for Lowering {
    fn cmp(&self, other: &Self) -> Ordering {
        self.per_step.total_cmp(&other.per_step).then(other.block.cmp(&self.block))
    }
}

/// Block `b`'s usage sorted from the largest down, and its line at `values[at]`.
struct Block {
    values: Vec<f64>,
    at: usize,
}

impl Block {
    /// Lowering the line to the next smaller value.
    fn next(&self, block: usize) -> Option<Lowering> {
        let v = &self.values;
        let to = (self.at..v.len()).find(|&j| v[j] < v[self.at])?;
        let per_step = (v[self.at] - v[to]) * (v.len() - to) as f64 / (to - self.at) as f64;
        Some(Lowering { per_step, block, to, cost: to - self.at })
    }
}

/// The oracle's replay of one workload's timeline with blocks of the policy's hold from its
/// first decision and at most ⌊risk × steps⌋ steps above the line, floored and rounded as
/// every plan is.
pub fn oracle(t: View, policy: &Policy, risk: f64, unit: f64, step_hours: f64) -> Replay {
    let hold_ms = policy.hold_ms();
    let Some(&first) = t.at.first() else { return Replay::default() };
    let block_of: Vec<usize> = t.at.iter().map(|&a| ((a - first) / hold_ms) as usize).collect();
    let mut blocks: Vec<Block> = Vec::new();
    for (b, usage) in block_of.iter().zip(t.usage.iter()) {
        if blocks.len() <= *b {
            blocks.resize_with(b + 1, || Block { values: Vec::new(), at: 0 });
        }
        blocks[*b].values.extend(usage);
    }
    for b in &mut blocks {
        b.values.sort_by(|x, y| y.total_cmp(x));
    }
    let mut budget = (risk * t.points() as f64).floor() as usize;
    let mut heap: BinaryHeap<Lowering> = blocks.iter().enumerate().filter_map(|(i, b)| b.next(i)).collect();
    while let Some(l) = heap.pop() {
        if l.cost > budget {
            continue;
        }
        budget -= l.cost;
        blocks[l.block].at = l.to;
        heap.extend(blocks[l.block].next(l.block));
    }
    let line = |b: &Block| policy.round(b.values.get(b.at).copied().unwrap_or(0.0));
    let mut out = Replay::default();
    let mut previous = None;
    for (b, usage) in block_of.iter().zip(t.usage.iter()) {
        let l = line(&blocks[*b]);
        if previous.is_some_and(|p| p != l) {
            out.changes += 1;
        }
        previous = Some(l);
        for u in usage {
            out.add(l / unit, u / unit, step_hours);
        }
    }
    out
}
