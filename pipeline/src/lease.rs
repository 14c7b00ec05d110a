//! Stage leases: at most one process runs a given stage of a given run at a time, wherever
//! the processes are (two shells on a laptop, an Argo retry beside a pod that is still
//! alive). A lease is an object created with a create-only put, so of two processes exactly
//! one gets it; the other waits for it to go and then finds the stage committed.
//!
//! A holder rewrites its lease every few seconds. A lease whose holder is gone — a process
//! on this host that no longer exists, or a lease unchanged for [`STALE`] by the waiter's own
//! clock (no comparison of clocks across machines) — is taken over, so a run killed with
//! `kill -9` never blocks its rerun for long.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Condvar, Mutex};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use bytes::Bytes;
use serde::{Deserialize, Serialize};

use crate::PipelineError;
use crate::store::Store;

/// How often a holder shows it is alive.
const BEAT: Duration = Duration::from_secs(5);
/// A lease unchanged this long has lost its holder.
pub const STALE: Duration = Duration::from_secs(30);
const POLL: Duration = Duration::from_millis(250);

#[derive(Debug, Serialize, Deserialize)]
struct Holder {
    host: String,
    pid: u32,
    /// Distinguishes this holder from an earlier one with the same pid.
    token: String,
    /// Bumped by every heartbeat, so the object changes while its holder lives.
    beat: u64,
}

fn host() -> String {
    std::fs::read_to_string("/proc/sys/kernel/hostname")
        .map(|h| h.trim().to_string())
        .or_else(|_| std::env::var("HOSTNAME"))
        .unwrap_or_default()
}

impl Holder {
    fn gone(&self) -> bool {
        // Only a process on this host can be looked up; /proc tells on Linux.
        !self.host.is_empty()
            && self.host == host()
            && std::path::Path::new("/proc/self").exists()
            && !std::path::Path::new(&format!("/proc/{}", self.pid)).exists()
    }

    fn bytes(&self) -> Bytes {
        Bytes::from(serde_json::to_vec(self).expect("holders serialize"))
    }
}

/// A held lease; dropping it releases it.
pub struct Lease {
    store: Store,
    path: String,
    stop: Arc<(Mutex<bool>, Condvar)>,
    heartbeat: Option<JoinHandle<()>>,
}

/// Takes the lease at `path`, waiting while another live process holds it. `waiting` is
/// called once with the holder's description when the wait begins.
pub fn acquire(store: &Store, path: &str, cancel: &AtomicBool, waiting: impl Fn(&str)) -> Result<Lease, PipelineError> {
    let mut me = Holder {
        host: host(),
        pid: std::process::id(),
        token: crate::store::digest(format!("{:?}{path}", std::time::SystemTime::now()).as_bytes())[..12].to_string(),
        beat: 0,
    };
    let mut seen: Option<(Bytes, Instant)> = None;
    loop {
        if store.put_new(path, me.bytes())? {
            break;
        }
        let Some(current) = store.get_opt(path)? else { continue }; // released meanwhile
        let since = match &seen {
            Some((bytes, since)) if *bytes == current => *since,
            _ => {
                if seen.is_none() {
                    waiting(&String::from_utf8_lossy(&current));
                }
                seen = Some((current.clone(), Instant::now()));
                Instant::now()
            }
        };
        let holder: Option<Holder> = serde_json::from_slice(&current).ok();
        if holder.is_some_and(|h| h.gone()) || since.elapsed() >= STALE {
            // Two waiters that judge the same dead lease stale at the same moment can both
            // take it; that needs its holder to have died first, and both then compute the
            // same outputs.
            tracing::warn!(lease = path, holder = %String::from_utf8_lossy(&current), "taking over a lease whose holder is gone");
            store.delete(path)?;
            seen = None;
            continue;
        }
        if cancel.load(Ordering::Relaxed) {
            return Err(PipelineError::Cancelled);
        }
        std::thread::sleep(POLL);
    }
    let stop = Arc::new((Mutex::new(false), Condvar::new()));
    let heartbeat = {
        let (store, path, stop) = (store.clone(), path.to_string(), stop.clone());
        std::thread::spawn(move || {
            let (flag, wake) = &*stop;
            let mut stopped = flag.lock().unwrap();
            loop {
                stopped = wake.wait_timeout_while(stopped, BEAT, |stopped| !*stopped).unwrap().0;
                if *stopped {
                    return;
                }
                me.beat += 1;
                if let Err(e) = store.put(&path, me.bytes()) {
                    tracing::warn!(lease = path, "cannot renew the lease: {e}");
                }
            }
        })
    };
    Ok(Lease { store: store.clone(), path: path.to_string(), stop, heartbeat: Some(heartbeat) })
}

impl Drop for Lease {
    fn drop(&mut self) {
        let (flag, wake) = &*self.stop;
        *flag.lock().unwrap() = true;
        wake.notify_all();
        if let Some(h) = self.heartbeat.take() {
            let _ = h.join();
        }
        if let Err(e) = self.store.delete(&self.path) {
            tracing::warn!(lease = self.path, "cannot release the lease (it goes stale in {STALE:?}): {e}");
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_second_taker_waits_for_the_first_to_release() {
        let store = Store::open("memory://b").unwrap();
        let cancel = AtomicBool::new(false);
        let first = acquire(&store, "r/s/_lease", &cancel, |_| panic!("nobody holds it")).unwrap();
        let waited = AtomicBool::new(false);
        std::thread::scope(|scope| {
            let second = scope.spawn(|| {
                let lease = acquire(&store, "r/s/_lease", &cancel, |h| {
                    assert!(h.contains(&format!("\"pid\":{}", std::process::id())), "{h}");
                    waited.store(true, Ordering::Relaxed);
                });
                lease.map(|_| Instant::now())
            });
            std::thread::sleep(Duration::from_millis(600));
            let released = Instant::now();
            drop(first);
            let taken = second.join().unwrap().unwrap();
            assert!(taken >= released, "taken while still held");
        });
        assert!(waited.load(Ordering::Relaxed));
        assert!(!store.exists("r/s/_lease").unwrap(), "released on drop");
    }

    #[test]
    fn a_lease_whose_process_is_gone_is_taken_over_at_once() {
        let store = Store::open("memory://b").unwrap();
        // A pid that cannot exist (above Linux's pid_max), on this host.
        let dead = Holder { host: host(), pid: 1 << 30, token: "t".into(), beat: 3 };
        store.put("r/s/_lease", dead.bytes()).unwrap();
        let clock = Instant::now();
        let lease = acquire(&store, "r/s/_lease", &AtomicBool::new(false), |_| {}).unwrap();
        assert!(clock.elapsed() < STALE / 2);
        let now: Holder = serde_json::from_slice(&store.get("r/s/_lease").unwrap()).unwrap();
        assert_eq!(now.pid, std::process::id());
        drop(lease);
    }
}
