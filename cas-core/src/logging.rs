//! Opt-in logging: quiet (warnings only) unless `CAS_LOG` says otherwise,
//! e.g. `CAS_LOG=info` or `CAS_LOG=cas_core::net=debug`.

use tracing_subscriber::EnvFilter;

/// The environment variable read by [`init`].
pub const ENV_VAR: &str = "CAS_LOG";

/// Installs a stderr logger filtered by `CAS_LOG` (default `warn`). Does
/// nothing if the host program installed a tracing subscriber already.
pub fn init() {
    let filter = EnvFilter::try_from_env(ENV_VAR).unwrap_or_else(|_| EnvFilter::new("warn"));
    let _ = tracing_subscriber::fmt().with_env_filter(filter).with_writer(std::io::stderr).try_init();
}
