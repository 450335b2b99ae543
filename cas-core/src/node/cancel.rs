//! Stopping a get from elsewhere, and settling the race between that and
//! its completion. A get has one point of no return, its commit (the rename
//! into place): a [`Cancel`] either comes before it, and the get fails with
//! [`Error::Cancelled`] leaving nothing at its destination, or after it, and
//! the canceller is told the get completed. Never both, never neither.

use std::sync::atomic::{AtomicU8, Ordering};
use std::sync::Arc;

use tokio_util::sync::CancellationToken;

use crate::error::{Error, Result};

const RUNNING: u8 = 0;
const CANCELLED: u8 = 1;
const COMMITTED: u8 = 2;

/// A cancellation handle for one operation. Clones share it; it may be
/// used from any thread.
#[derive(Clone, Debug, Default)]
pub struct Cancel {
    inner: Arc<Inner>,
}

#[derive(Debug, Default)]
struct Inner {
    state: AtomicU8,
    token: CancellationToken,
}

impl Cancel {
    /// A handle for a new operation.
    pub fn new() -> Cancel {
        Cancel::default()
    }

    /// Asks the operation to stop. `true`: it will fail with
    /// [`Error::Cancelled`] and leave nothing behind (also when it was
    /// already cancelled); `false`: it had already committed and succeeds.
    pub fn cancel(&self) -> bool {
        match self.inner.state.compare_exchange(RUNNING, CANCELLED, Ordering::AcqRel, Ordering::Acquire) {
            Ok(_) => {
                self.inner.token.cancel();
                true
            }
            Err(state) => state == CANCELLED,
        }
    }

    /// Whether [`Cancel::cancel`] won.
    pub fn is_cancelled(&self) -> bool {
        self.inner.state.load(Ordering::Acquire) == CANCELLED
    }

    /// Resolves once cancelled.
    pub(crate) async fn cancelled(&self) {
        self.inner.token.cancelled().await
    }

    /// Fails with [`Error::Cancelled`] if cancelled (a check between steps).
    pub(crate) fn check(&self) -> Result<()> {
        if self.is_cancelled() {
            return Err(Error::Cancelled);
        }
        Ok(())
    }

    /// The point of no return: after `Ok`, `cancel()` returns `false`.
    pub(crate) fn commit(&self) -> Result<()> {
        match self.inner.state.compare_exchange(RUNNING, COMMITTED, Ordering::AcqRel, Ordering::Acquire) {
            Ok(_) => Ok(()),
            Err(COMMITTED) => Ok(()),
            Err(_) => Err(Error::Cancelled),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cancel_and_commit_exclude_each_other() {
        let c = Cancel::new();
        assert!(c.cancel());
        assert!(c.cancel(), "cancelling twice still reports a cancelled operation");
        assert!(matches!(c.commit(), Err(Error::Cancelled)));

        let c = Cancel::new();
        c.commit().unwrap();
        assert!(!c.cancel(), "too late: the operation completed");
        assert!(!c.is_cancelled());
        c.check().unwrap();
    }

    #[test]
    fn racing_threads_agree_on_one_outcome() {
        for _ in 0..1000 {
            let c = Cancel::new();
            let other = c.clone();
            let canceller = std::thread::spawn(move || other.cancel());
            let committed = c.commit().is_ok();
            let cancelled = canceller.join().unwrap();
            assert_ne!(committed, cancelled, "exactly one side wins");
        }
    }
}
