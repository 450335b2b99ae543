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
    /// Cancelled as soon as the callback fails, before the operation goes on.
    cancel: Option<cas_core::Cancel>,
}

impl Callback {
    /// `None` when no callback (or `None`) was given. A failure of the
    /// callback cancels `cancel`, if given, before the operation continues.
    pub fn new(func: Option<Py<PyAny>>, cancel: Option<&cas_core::Cancel>) -> Option<Arc<Callback>> {
        func.map(|func| Arc::new(Callback { func, failure: Mutex::new(None), cancel: cancel.cloned() }))
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
                if let Some(cancel) = &self.cancel {
                    cancel.cancel();
                }
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
    wait_cancellable(py, callback, None, future)
}

/// [`wait`] for an operation that `cancel` stops. On Ctrl-C or a failed
/// callback it is cancelled and awaited until it has wound down (no worker
/// writes on its behalf when this returns); if it had already committed
/// (the cancel came too late), its success is returned, and a Ctrl-C is
/// raised again once the call has returned.
pub fn wait_cancellable<T, F>(
    py: Python<'_>,
    callback: Option<&Arc<Callback>>,
    cancel: Option<&cas_core::Cancel>,
    future: F,
) -> PyResult<T>
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
                let stop = tokio::select! {
                    result = &mut future => return Outcome::Finished(result),
                    _ = poll.tick() => {
                        if callback.is_some_and(|c| c.failed()) {
                            Outcome::CallbackFailed
                        } else {
                            // Signal handlers (KeyboardInterrupt) run only on the main thread;
                            // elsewhere this returns at once.
                            match Python::attach(|py| py.check_signals()) {
                                Err(e) => Outcome::Interrupted(e),
                                Ok(()) => continue,
                            }
                        }
                    }
                };
                if cancel.is_some_and(|c| !c.cancel()) {
                    // Too late to stop: it committed. Its result stands.
                    let result = (&mut future).await;
                    if matches!(stop, Outcome::Interrupted(_)) {
                        // SAFETY: PyErr_SetInterrupt may be called without the GIL.
                        unsafe { pyo3::ffi::PyErr_SetInterrupt() };
                    }
                    return Outcome::Finished(result);
                }
                if cancel.is_some() {
                    // Cancelled in time: it fails with Cancelled once settled.
                    let _ = (&mut future).await;
                }
                return stop;
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
