//! The one way per-host work runs in parallel: every phase that works on
//! several hosts at once goes through [`per_host`].
//!
//! After Ctrl-C (`interrupt.rs`) the items keep being handed out, but each
//! host step checks the flag before it starts (an installer call in
//! `remote.rs`, a host's layers in `distribute.rs`) and fails at once with
//! `ApplyError::Interrupted`, so the items not yet started end in a moment,
//! as failures the phase collects like any other, and the host is left as
//! it was (not marked Failed).

use std::num::NonZeroUsize;
use std::sync::atomic::{AtomicUsize, Ordering};

/// At most this many hosts are worked on at once (`--max-parallel`, 64 by
/// default): a large cluster does not start a thread, and an SSH session's
/// worth of work, per host all at the same moment.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct MaxParallel(NonZeroUsize);

impl MaxParallel {
    /// The default cap: k0sctl's `--concurrency` default is 30, sealrs's
    /// hosts cost a thread and a session each, which 64 keep small.
    pub const DEFAULT: MaxParallel = MaxParallel(NonZeroUsize::new(64).expect("not zero"));

    pub fn get(self) -> usize {
        self.0.get()
    }
}

impl Default for MaxParallel {
    fn default() -> Self {
        Self::DEFAULT
    }
}

impl std::fmt::Display for MaxParallel {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        self.0.fmt(f)
    }
}

impl std::str::FromStr for MaxParallel {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        s.bytes()
            .all(|b| b.is_ascii_digit())
            .then(|| s.parse::<NonZeroUsize>().ok())
            .flatten()
            .map(MaxParallel)
            .ok_or_else(|| {
                format!("{s:?} is not a number of hosts to work on at once (1 or more), e.g. 64")
            })
    }
}

/// Runs `work` on every item, at most `cap` at a time, each on a thread of
/// its own; the results in item order. What failed is in the results: the
/// caller collects the failures per host.
pub(super) fn per_host<I: Sync, T: Send>(
    cap: MaxParallel,
    items: &[I],
    work: impl Fn(&I) -> T + Sync,
) -> Vec<T> {
    let next = AtomicUsize::new(0);
    let workers = items.len().min(cap.get());
    let mut results: Vec<Option<T>> = items.iter().map(|_| None).collect();
    std::thread::scope(|scope| {
        let handles: Vec<_> = (0..workers)
            .map(|_| {
                let (next, work) = (&next, &work);
                scope.spawn(move || {
                    let mut done = Vec::new();
                    loop {
                        let i = next.fetch_add(1, Ordering::Relaxed);
                        let Some(item) = items.get(i) else {
                            return done;
                        };
                        done.push((i, work(item)));
                    }
                })
            })
            .collect();
        for handle in handles {
            for (i, result) in handle.join().expect("a host thread panicked") {
                results[i] = Some(result);
            }
        }
    });
    results
        .into_iter()
        .map(|r| r.expect("every item is worked on"))
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_item_is_worked_on_once_in_order_and_no_more_than_the_cap_at_once() {
        let running = AtomicUsize::new(0);
        let most = AtomicUsize::new(0);
        let cap: MaxParallel = "4".parse().unwrap();
        let items: Vec<usize> = (0..cap.get() * 2 + 3).collect();
        let out = per_host(cap, &items, |i| {
            let now = running.fetch_add(1, Ordering::SeqCst) + 1;
            most.fetch_max(now, Ordering::SeqCst);
            std::thread::sleep(std::time::Duration::from_millis(5));
            running.fetch_sub(1, Ordering::SeqCst);
            i * 2
        });
        assert_eq!(out, items.iter().map(|i| i * 2).collect::<Vec<_>>());
        assert!(most.load(Ordering::SeqCst) <= cap.get());
        assert!(per_host(cap, &[] as &[u8], |_| ()).is_empty());
    }

    #[test]
    fn max_parallel_is_a_positive_number_and_anything_else_is_refused_saying_so() {
        assert_eq!(MaxParallel::default().get(), 64);
        assert_eq!("1".parse::<MaxParallel>().unwrap().get(), 1);
        for bad in ["0", "", "-3", "+3", "ten", "4%", " 4"] {
            let error = bad.parse::<MaxParallel>().unwrap_err();
            assert!(error.contains("1 or more"), "{bad}: {error}");
        }
    }
}
