//! The library's version, for C: the `CAS_VERSION_*` macros of the header
//! (cbindgen turns these constants into `#define`s) and cas_version() at
//! run time. The constants are literals because cbindgen reads the source;
//! a compile-time check ties them to the crate's version, so bumping one
//! without the other does not build, and the C tests compare the header's
//! CAS_VERSION_STRING with cas_version().

use std::ffi::{c_char, CStr};

/// Major version of the header (`#define`); compare with cas_version().
pub const CAS_VERSION_MAJOR: u32 = 0;
/// Minor version of the header.
pub const CAS_VERSION_MINOR: u32 = 1;
/// Patch version of the header.
pub const CAS_VERSION_PATCH: u32 = 0;
/// "MAJOR.MINOR.PATCH", returned by cas_version(). cbindgen does not emit
/// string constants: the header's CAS_VERSION_STRING is built from the
/// three numbers by the preprocessor (`after_includes` in cbindgen.toml).
const VERSION: &CStr = c"0.1.0";

const fn parse_u32(text: &str) -> u32 {
    let bytes = text.as_bytes();
    let (mut i, mut n) = (0, 0u32);
    while i < bytes.len() {
        n = n * 10 + (bytes[i] - b'0') as u32;
        i += 1;
    }
    n
}

const fn same(a: &[u8], b: &[u8]) -> bool {
    if a.len() != b.len() {
        return false;
    }
    let mut i = 0;
    while i < a.len() {
        if a[i] != b[i] {
            return false;
        }
        i += 1;
    }
    true
}

const _: () = assert!(
    CAS_VERSION_MAJOR == parse_u32(env!("CARGO_PKG_VERSION_MAJOR"))
        && CAS_VERSION_MINOR == parse_u32(env!("CARGO_PKG_VERSION_MINOR"))
        && CAS_VERSION_PATCH == parse_u32(env!("CARGO_PKG_VERSION_PATCH"))
        && same(VERSION.to_bytes(), env!("CARGO_PKG_VERSION").as_bytes()),
    "the CAS_VERSION_* constants must match the crate version in Cargo.toml"
);

/// The library's version ("0.1.0"), as CAS_VERSION_STRING of the header it
/// was built with: a program can check that the library it loaded is the
/// one it was compiled against (same major version). A static string,
/// never freed. Thread-safe.
#[no_mangle]
pub extern "C" fn cas_version() -> *const c_char {
    VERSION.as_ptr()
}
