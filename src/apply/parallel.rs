//! The one way per-host work runs in parallel: every phase that works on
//! several hosts at once goes through [`per_host`].
//!
//! After Ctrl-C (`interrupt.rs`) the items keep being handed out, but each
//! host step checks the flag before it starts (an installer call in
//! `remote.rs`, a host's layers in `distribute.rs`) and fails at once with
//! `ApplyError::Interrupted`, so the items not yet started end in a moment,
//! as failures the phase collects like any other, and the host is left as
//! it was (not marked Failed).

use std::sync::atomic::{AtomicUsize, Ordering};

/// At most this many hosts are worked on at once (as k0sctl's default
/// concurrency): a large cluster does not start a thread, and an SSH
/// session's worth of work, per host all at the same moment.
pub(super) const MAX_PARALLEL_HOSTS: usize = 30;

/// Runs `work` on every item, at most [`MAX_PARALLEL_HOSTS`] at a time, each
/// on a thread of its own; the results in item order. What failed is in the
/// results: the caller collects the failures per host.
pub(super) fn per_host<I: Sync, T: Send>(items: &[I], work: impl Fn(&I) -> T + Sync) -> Vec<T> {
    let next = AtomicUsize::new(0);
    let workers = items.len().min(MAX_PARALLEL_HOSTS);
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
        let items: Vec<usize> = (0..MAX_PARALLEL_HOSTS * 2 + 3).collect();
        let out = per_host(&items, |i| {
            let now = running.fetch_add(1, Ordering::SeqCst) + 1;
            most.fetch_max(now, Ordering::SeqCst);
            std::thread::sleep(std::time::Duration::from_millis(5));
            running.fetch_sub(1, Ordering::SeqCst);
            i * 2
        });
        assert_eq!(out, items.iter().map(|i| i * 2).collect::<Vec<_>>());
        assert!(most.load(Ordering::SeqCst) <= MAX_PARALLEL_HOSTS);
        assert!(per_host(&[] as &[u8], |_| ()).is_empty());
    }
}
