//! Which stages may start: a pure queue over the DAG, no threads or I/O, after cargo's
//! `dependency_queue`. The executor enqueues the stages a run selects, dequeues whatever is
//! ready whenever a worker is free, and reports each stage it finishes.

/// Stages by index into the pipeline (topological order); `upstream[j]` are what `j` reads.
#[derive(Debug, Clone)]
pub struct ReadyQueue {
    upstream: Vec<Vec<usize>>,
    queued: Vec<bool>,
    started: Vec<bool>,
    done: Vec<bool>,
}

impl ReadyQueue {
    /// A queue over stages with these upstream lists; `done` marks those already committed
    /// (inputs a run reads but does not execute).
    pub fn new(upstream: Vec<Vec<usize>>, done: Vec<bool>) -> Self {
        let n = upstream.len();
        assert_eq!(done.len(), n, "one done flag per stage");
        ReadyQueue { upstream, queued: vec![false; n], started: vec![false; n], done }
    }

    /// Asks for stage `j` to run once its inputs are done.
    pub fn enqueue(&mut self, j: usize) {
        self.queued[j] = true;
    }

    /// The first queued stage (in pipeline order) whose inputs are all done, now started.
    pub fn dequeue(&mut self) -> Option<usize> {
        let j = (0..self.upstream.len())
            .find(|&j| self.queued[j] && !self.started[j] && self.upstream[j].iter().all(|&u| self.done[u]))?;
        self.started[j] = true;
        Some(j)
    }

    /// Stage `j` committed: what reads it may start.
    pub fn finish(&mut self, j: usize) {
        debug_assert!(self.started[j], "finished a stage that never started");
        self.done[j] = true;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// a → b, a → c, (b, c) → d.
    fn diamond() -> ReadyQueue {
        ReadyQueue::new(vec![vec![], vec![0], vec![0], vec![1, 2]], vec![false; 4])
    }

    #[test]
    fn stages_start_only_when_their_inputs_are_done() {
        let mut q = diamond();
        (0..4).for_each(|j| q.enqueue(j));
        assert_eq!(q.dequeue(), Some(0));
        assert_eq!(q.dequeue(), None, "b and c wait for a");
        q.finish(0);
        assert_eq!((q.dequeue(), q.dequeue(), q.dequeue()), (Some(1), Some(2), None));
        q.finish(2);
        assert_eq!(q.dequeue(), None, "d waits for b too");
        q.finish(1);
        assert_eq!(q.dequeue(), Some(3));
        q.finish(3);
        assert_eq!(q.dequeue(), None);
    }

    #[test]
    fn committed_inputs_count_as_done_and_unqueued_stages_never_run() {
        let mut q = ReadyQueue::new(vec![vec![], vec![0], vec![0], vec![1, 2]], vec![true, false, false, false]);
        q.enqueue(1);
        assert_eq!(q.dequeue(), Some(1));
        assert_eq!(q.dequeue(), None);
        q.finish(1);
        assert_eq!(q.dequeue(), None, "c and d were not asked for");
    }

    #[test]
    fn a_stage_whose_input_never_finishes_stays_unstarted() {
        let mut q = diamond();
        (0..4).for_each(|j| q.enqueue(j));
        assert_eq!(q.dequeue(), Some(0));
        // a fails: nothing is finished, the rest never starts.
        assert_eq!(q.dequeue(), None);
        assert_eq!(q.dequeue(), None);
    }
}
