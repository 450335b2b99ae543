//! `cas_writer`: a streaming put. C pushes bytes with cas_writer_write into
//! a bounded in-memory pipe; a task on the shared runtime runs the engine's
//! `put_reader` on the other end. A full pipe blocks the writer, so memory
//! stays bounded whatever the size of the file.

use std::ffi::{c_char, c_void};

use cas_core::{Cancel, Error, PutReport};
use tokio::io::{AsyncWriteExt, DuplexStream};
use tokio::task::JoinHandle;

use crate::boundary::{
    arg_bytes, arg_mut, cas_progress_fn, ffi_boundary, ffi_boundary_void, into_handle, progress_callback, run, Out,
};
use crate::error::FfiError;
use crate::memory::owned_c_string;
use crate::node::{cas_node, node_arg};
use crate::status::cas_status;

/// Bytes buffered between cas_writer_write and the put pipeline.
const PIPE_BYTES: usize = 256 * 1024;

/// A streaming put in progress (opaque). Created by cas_writer_open, freed
/// by cas_writer_free. Not thread-safe: use it from one thread at a time
/// (any thread).
pub struct cas_writer {
    state: Option<Streaming>,
}

struct Streaming {
    pipe: DuplexStream,
    task: JoinHandle<cas_core::Result<PutReport>>,
    cancel: Cancel,
}

impl Streaming {
    /// Waits for the put task and returns its outcome.
    fn join(self) -> Result<PutReport, FfiError> {
        drop(self.pipe);
        match run(self.task)? {
            Ok(result) => Ok(result?),
            Err(e) if e.is_panic() => Err(FfiError::panic(e.into_panic())),
            Err(_) => Err(Error::Closed.into()),
        }
    }
}

fn finished() -> FfiError {
    FfiError::new(cas_status::CAS_ERR_CLOSED, "this writer is finished (or failed); open a new one")
}

/// Starts a streaming put on `node`.
///
/// `size_hint` is the expected total size, only reported to `progress` as
/// the total (0 if unknown; the last call gives the size stored as both).
/// `progress` may be NULL; if given it is called with `user` from a library
/// thread while the writer is open (see cas_progress_fn). If it returns
/// non-zero the put stops: the next cas_writer_write or cas_writer_finish
/// returns CAS_ERR_CANCELLED (chunks stored before stay, as with
/// cas_node_put_file). On success `*writer_out` receives a handle the
/// caller owns and frees with cas_writer_free. Fails with CAS_ERR_CLOSED if
/// the node was stopped.
#[no_mangle]
pub unsafe extern "C" fn cas_writer_open(
    node: *const cas_node,
    size_hint: u64,
    progress: cas_progress_fn,
    user: *mut c_void,
    writer_out: *mut *mut cas_writer,
) -> cas_status {
    ffi_boundary(|| {
        let node = unsafe { node_arg(node) }?;
        let out = unsafe { Out::new(writer_out, "writer_out") }?;
        if node.is_closed() {
            return Err(Error::Closed.into());
        }
        let cancel = Cancel::new();
        let progress = progress_callback(progress, user, &cancel);
        let (pipe, mut source) = tokio::io::duplex(PIPE_BYTES);
        let runtime = cas_core::blocking::runtime()?;
        let put_cancel = cancel.clone();
        let task = runtime
            .spawn(async move { node.put_reader_cancellable(&mut source, size_hint, progress, &put_cancel).await });
        out.write(into_handle(cas_writer { state: Some(Streaming { pipe, task, cancel }) }));
        Ok(())
    })
}

/// Appends `len` bytes at `data` to the file being written. Blocks while
/// the pipeline is full (back-pressure).
///
/// `data` may be NULL only if `len` is 0. If the put fails (disk full, node
/// stopped, ...) this returns its error and the writer is finished: later
/// calls return CAS_ERR_CLOSED.
#[no_mangle]
pub unsafe extern "C" fn cas_writer_write(writer: *mut cas_writer, data: *const u8, len: usize) -> cas_status {
    ffi_boundary(|| {
        let writer = unsafe { arg_mut(writer, "writer") }?;
        let data = unsafe { arg_bytes(data, len, "data") }?;
        let streaming = writer.state.as_mut().ok_or_else(finished)?;
        if run(streaming.pipe.write_all(data))?.is_ok() {
            return Ok(());
        }
        // The pipe broke: the put ended early. Its own error says why.
        let streaming = writer.state.take().expect("checked above");
        match streaming.join() {
            Err(e) => Err(e),
            Ok(_) => Err(FfiError::new(cas_status::CAS_ERR_IO, "the put ended before all its bytes were written")),
        }
    })
}

/// Ends the file, waits until everything is stored and returns its key.
///
/// On success `*key_out` receives a string the caller owns and frees with
/// cas_string_free. Whatever the outcome the writer is finished afterwards
/// (later calls return CAS_ERR_CLOSED) and must still be freed with
/// cas_writer_free; except CAS_ERR_NULL_ARGUMENT and CAS_ERR_IN_CALLBACK,
/// which leave the writer as it was.
#[no_mangle]
pub unsafe extern "C" fn cas_writer_finish(writer: *mut cas_writer, key_out: *mut *mut c_char) -> cas_status {
    ffi_boundary(|| {
        let writer = unsafe { arg_mut(writer, "writer") }?;
        let out = unsafe { Out::new(key_out, "key_out") }?;
        let streaming = writer.state.as_mut().ok_or_else(finished)?;
        // An error here means the put already ended; join reports why. The
        // writer is taken only after `run` accepted to block: refused (in a
        // callback), the writer must stay as it was, not end the put early.
        let _ = run(streaming.pipe.shutdown())?;
        let report = writer.state.take().expect("checked above").join()?;
        out.write(owned_c_string(report.key.to_string())?);
        Ok(())
    })
}

/// Frees a writer. If it was not finished, the put is cancelled (no key is
/// produced; chunks already stored stay as unreferenced blobs) and this
/// waits until no library thread works on it (its progress callback can
/// no longer run, no temporary file is left). Called from inside
/// a progress callback, where nothing may block, it cannot wait: the put is
/// cancelled in the background, and the writer's callback may still run
/// once on another thread, so keep its `user` data alive until that
/// callback has returned. NULL is a no-op.
#[no_mangle]
pub unsafe extern "C" fn cas_writer_free(writer: *mut cas_writer) {
    ffi_boundary_void(|| {
        if writer.is_null() {
            return;
        }
        // SAFETY: per the contract, `writer` came from cas_writer_open.
        let writer = unsafe { Box::from_raw(writer) };
        let Some(Streaming { pipe, task, cancel }) = writer.state else { return };
        // Cancel before the pipe closes, or the put would see a clean end
        // of input and store a truncated file.
        cancel.cancel();
        match tokio::runtime::Handle::try_current() {
            Ok(rt) => drop(rt.spawn(async move {
                let _ = task.await;
                drop(pipe);
            })),
            Err(_) => {
                let _ = run(task);
                drop(pipe);
            }
        }
    })
}
