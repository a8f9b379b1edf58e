//! The async bridge: russh's futures run on a small tokio runtime owned by
//! this module (never dropped), and each blocking call spawns its work there and
//! waits on a std channel. So [`super::Ssh`] stays synchronous for callers on
//! plain threads, and does not panic when called from inside another runtime
//! (as `Runtime::block_on` would).

use std::future::Future;
use std::sync::mpsc as std_mpsc;
use std::sync::OnceLock;

use crate::transport::TransportError;

/// The runtime every SSH task runs on, started on first use.
pub(super) fn runtime() -> &'static tokio::runtime::Runtime {
    static RT: OnceLock<tokio::runtime::Runtime> = OnceLock::new();
    RT.get_or_init(|| {
        tokio::runtime::Builder::new_multi_thread()
            .worker_threads(2)
            .thread_name("sealrs-ssh")
            .enable_all()
            .build()
            .expect("start the SSH runtime")
    })
}

enum Event<T> {
    Progress(u64),
    Line(String),
    Done(T),
}

/// Reports progress from inside a task to the waiting caller.
pub(super) struct Reporter<T>(std_mpsc::Sender<Event<T>>);

/// Whatever `T` is: only the sender is cloned.
impl<T> Clone for Reporter<T> {
    fn clone(&self) -> Self {
        Reporter(self.0.clone())
    }
}

impl<T> Reporter<T> {
    pub(super) fn progress(&self, bytes: u64) {
        let _ = self.0.send(Event::Progress(bytes));
    }

    /// A line of a command's stderr, for [`drive_watching`]'s `on_line`.
    pub(super) fn line(&self, text: String) {
        let _ = self.0.send(Event::Line(text));
    }
}

/// Runs the future made by `make` on the SSH runtime and waits for it, calling
/// `progress` on this thread for each progress event.
pub(super) fn drive<T, F, Fut>(
    host: &str,
    progress: &dyn Fn(u64),
    make: F,
) -> Result<T, TransportError>
where
    T: Send + 'static,
    F: FnOnce(Reporter<Result<T, TransportError>>) -> Fut,
    Fut: Future<Output = Result<T, TransportError>> + Send + 'static,
{
    drive_watching(host, progress, &|_| {}, make)
}

/// [`drive`], also calling `on_line` on this thread for each line reported.
pub(super) fn drive_watching<T, F, Fut>(
    host: &str,
    progress: &dyn Fn(u64),
    on_line: &dyn Fn(&str),
    make: F,
) -> Result<T, TransportError>
where
    T: Send + 'static,
    F: FnOnce(Reporter<Result<T, TransportError>>) -> Fut,
    Fut: Future<Output = Result<T, TransportError>> + Send + 'static,
{
    let (tx, rx) = std_mpsc::channel();
    let fut = make(Reporter(tx.clone()));
    runtime().spawn(async move {
        let result = fut.await;
        let _ = tx.send(Event::Done(result));
    });
    loop {
        match rx.recv() {
            Ok(Event::Progress(n)) => progress(n),
            Ok(Event::Line(text)) => on_line(&text),
            Ok(Event::Done(result)) => return result,
            Err(_) => {
                return Err(TransportError::Ssh {
                    host: host.to_string(),
                    action: "running a task".to_string(),
                    detail: "the SSH task ended without a result".to_string(),
                })
            }
        }
    }
}
