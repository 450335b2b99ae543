//! The C ABI of CAS: `libcas.so` / `libcas.a`, described by `include/cas.h`
//! (generated from this crate by cbindgen; `make header`).
//!
//! One module per C "class", each only translating between C and
//! `cas-core`: [`config`] (`cas_config`), [`node`] (`cas_node`), [`writer`]
//! and [`reader`] (streaming put and get), [`stat`] and [`peers`], [`log`] (the library's log records), [`http`] (the HTTP gateway). Shared
//! plumbing: [`status`] (the numbered `cas_status`), [`error`] (the
//! per-thread last error), [`boundary`] (panic catching, argument checks,
//! blocking on the shared runtime) and [`memory`] (returned strings and
//! buffers), [`version`] (the version macros and cas_version).
//!
//! Safety contract of every export (hence no per-function `# Safety`
//! section): each pointer argument is NULL (reported as
//! `CAS_ERR_NULL_ARGUMENT` where not allowed) or valid for what its doc
//! comment says: a NUL-terminated string, `len` bytes, a live handle from
//! this library, or a writable out-parameter.

#![allow(non_camel_case_types, clippy::missing_safety_doc)]
#![deny(unsafe_op_in_unsafe_fn)]

pub mod boundary;
pub mod config;
pub mod error;
pub mod files;
pub mod http;
pub mod log;
pub mod memory;
pub mod node;
pub mod peers;
pub mod reader;
pub mod stat;
pub mod status;
pub mod version;
pub mod writer;
