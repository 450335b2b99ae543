//! Gives libcas.so its SONAME, libcas.so.MAJOR: programs linked with it
//! record that name and load any later library of the same major version
//! (`make install` installs libcas.so.MAJOR.MINOR.PATCH with the links).

fn main() {
    let major = std::env::var("CARGO_PKG_VERSION_MAJOR").expect("cargo sets the package version");
    println!("cargo:rustc-cdylib-link-arg=-Wl,-soname,libcas.so.{major}");
}
