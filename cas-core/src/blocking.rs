//! The one process-wide tokio runtime used by the C and Python bindings, and
//! a `block_on` that refuses to run in a forked child (whose copy of the
//! runtime has no threads and would hang).

use std::future::Future;

use once_cell::sync::OnceCell;
use tokio::runtime::Runtime;

use crate::error::{Error, Result};

static RUNTIME: OnceCell<(Runtime, u32)> = OnceCell::new();

/// The shared runtime, created on first use.
pub fn runtime() -> Result<&'static Runtime> {
    let (rt, pid) = RUNTIME.get_or_try_init(|| {
        tokio::runtime::Builder::new_multi_thread()
            .enable_all()
            .thread_name("cas-worker")
            .build()
            .map(|rt| (rt, std::process::id()))
            .map_err(|e| Error::io("starting the CAS runtime", e))
    })?;
    if *pid != std::process::id() {
        return Err(Error::InvalidArgument(
            "CAS was started before this process forked; a forked child must not use the parent's nodes".into(),
        ));
    }
    Ok(rt)
}

/// Runs a future to completion on the shared runtime, from a non-async thread.
pub fn block_on<F: Future>(future: F) -> Result<F::Output> {
    Ok(runtime()?.block_on(future))
}

/// Runs blocking work on the blocking pool, propagating a panic as a panic.
pub(crate) async fn blocking<T: Send + 'static>(f: impl FnOnce() -> T + Send + 'static) -> T {
    match tokio::task::spawn_blocking(f).await {
        Ok(v) => v,
        Err(e) => std::panic::resume_unwind(e.into_panic()),
    }
}
