//! Running a cas-core future from a Python thread: the GIL is released while
//! it runs (other Python threads keep going), Ctrl-C cancels it, and a
//! Python progress callback is called with the GIL reacquired.

use std::future::Future;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use cas_core::Progress;
use pyo3::prelude::*;

use crate::errors::to_pyerr;

/// How often a waiting call looks for a pending signal or a failed callback.
const POLL_INTERVAL: Duration = Duration::from_millis(100);

/// A Python progress callback `(done, total)`. An exception it raises is
/// kept, stops further calls and the operation, and is raised from it.
pub struct Callback {
    func: Py<PyAny>,
    failure: Mutex<Option<PyErr>>,
}

impl Callback {
    /// `None` when no callback (or `None`) was given.
    pub fn new(func: Option<Py<PyAny>>) -> Option<Arc<Callback>> {
        func.map(|func| Arc::new(Callback { func, failure: Mutex::new(None) }))
    }

    /// The callback as cas-core calls it (from any thread).
    pub fn progress(self: &Arc<Self>) -> Progress {
        let cb = self.clone();
        Arc::new(move |done, total| cb.call(done, total))
    }

    fn call(&self, done: u64, total: u64) {
        if self.failed() {
            return;
        }
        Python::attach(|py| {
            if let Err(e) = self.func.call1(py, (done, total)) {
                self.lock().get_or_insert(e);
            }
        });
    }

    fn failed(&self) -> bool {
        self.lock().is_some()
    }

    fn take_failure(&self) -> Option<PyErr> {
        self.lock().take()
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Option<PyErr>> {
        self.failure.lock().unwrap_or_else(|poisoned| poisoned.into_inner())
    }
}

enum Outcome<T> {
    Finished(cas_core::Result<T>),
    Interrupted(PyErr),
    CallbackFailed,
}

/// Runs `future` on the shared runtime with the GIL released.
pub fn wait<T, F>(py: Python<'_>, callback: Option<&Arc<Callback>>, future: F) -> PyResult<T>
where
    F: Future<Output = cas_core::Result<T>> + Send,
    T: Send,
{
    let outcome = py.detach(|| {
        cas_core::blocking::block_on(async {
            tokio::pin!(future);
            let mut poll = tokio::time::interval(POLL_INTERVAL);
            poll.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
            loop {
                tokio::select! {
                    result = &mut future => return Outcome::Finished(result),
                    _ = poll.tick() => {
                        if callback.is_some_and(|c| c.failed()) {
                            return Outcome::CallbackFailed;
                        }
                        // Signal handlers (KeyboardInterrupt) run only on the main thread;
                        // elsewhere this returns at once.
                        if let Err(e) = Python::attach(|py| py.check_signals()) {
                            return Outcome::Interrupted(e);
                        }
                    }
                }
            }
        })
    });
    let outcome = outcome.map_err(to_pyerr)?;
    // The callback's own exception explains the outcome best, whatever it is.
    if let Some(e) = callback.and_then(|c| c.take_failure()) {
        return Err(e);
    }
    match outcome {
        Outcome::Finished(result) => result.map_err(to_pyerr),
        Outcome::Interrupted(e) => Err(e),
        Outcome::CallbackFailed => Err(pyo3::exceptions::PyRuntimeError::new_err("the progress callback failed")),
    }
}
