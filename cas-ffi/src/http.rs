//! `cas_node_serve_http`: the HTTP gateway of a node (crate `cas-http`).

use std::ffi::c_char;

use crate::boundary::{arg_ref, arg_str, ffi_boundary, run, Out};
use crate::memory::owned_c_string;
use crate::node::cas_node;
use crate::status::cas_status;

/// Serves the node over HTTP (files by key with ranges, uploads, the JSON
/// API, Prometheus metrics at /metrics, /health and a web page at /) until
/// the node is stopped or freed.
///
/// `addr` is "HOST:PORT" (port 0 picks a free one; NULL means
/// "127.0.0.1:0"), or "unix:PATH" for an owner-only Unix socket. Only
/// loopback addresses are accepted here: the bearer token that another
/// address needs is given through `cas serve --http-token` or Python.
/// `bound_out` may be NULL; otherwise on success `*bound_out` receives the
/// bound "host:port" (or the socket's path), a string the caller owns and
/// frees with cas_string_free. Fails with CAS_ERR_INVALID_ARGUMENT for a
/// bad or non-loopback address, CAS_ERR_NETWORK if it cannot be bound,
/// CAS_ERR_CLOSED if the node was stopped. Thread-safe.
///
/// Over TCP it answers only requests whose Host is its own address,
/// 127.0.0.1, localhost or [::1] with its port, and refuses uploads from
/// another site's page (a foreign Origin): 403. Other names can be allowed
/// through `cas serve --http-host` or Python, not here.
#[no_mangle]
pub unsafe extern "C" fn cas_node_serve_http(
    node: *const cas_node,
    addr: *const c_char,
    bound_out: *mut *mut c_char,
) -> cas_status {
    ffi_boundary(|| {
        let handle = unsafe { arg_ref(node, "node") }?;
        let addr = if addr.is_null() { "127.0.0.1:0" } else { unsafe { arg_str(addr, "addr") }? };
        let out = if bound_out.is_null() { None } else { Some(unsafe { Out::new(bound_out, "bound_out") }?) };
        if handle.node.is_closed() {
            return Err(cas_core::Error::Closed.into());
        }
        let server = run(cas_http::serve(handle.node.clone(), addr, cas_http::Options::default()))??;
        let bound = server.address().to_string();
        handle.servers.lock().unwrap_or_else(|poisoned| poisoned.into_inner()).push(server);
        if let Some(out) = out {
            out.write(owned_c_string(bound)?);
        }
        Ok(())
    })
}
