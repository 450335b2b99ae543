//! Opt-in logging: quiet (warnings only) unless `CAS_LOG` says otherwise,
//! e.g. `CAS_LOG=info` or `CAS_LOG=cas_core::net=debug`. Records go to
//! stderr (coloured only on a terminal), as text or, with
//! `CAS_LOG_FORMAT=json`, one JSON object a line (for log shippers); or,
//! once a host has set a [`LogSink`], to that sink instead.

use std::io::IsTerminal;
use std::sync::atomic::{AtomicU8, Ordering};
use std::sync::{Arc, RwLock};

use once_cell::sync::OnceCell;
use tracing::field::{Field, Visit};
use tracing::subscriber::Interest;
pub use tracing::Level;
use tracing::{Event, Metadata, Subscriber};
use tracing_subscriber::filter::{EnvFilter, FilterExt, LevelFilter};
use tracing_subscriber::layer::{Context, Filter, Layer, SubscriberExt};
use tracing_subscriber::util::SubscriberInitExt;

/// The environment variable read by [`init`].
pub const ENV_VAR: &str = "CAS_LOG";
/// The environment variable that chooses the format of stderr's records:
/// `json` or `text` (the default).
pub const FORMAT_VAR: &str = "CAS_LOG_FORMAT";

/// Receives log records: level, target (the module, e.g.
/// `cas_core::net`) and the message with its fields. Called from any
/// thread, possibly from several at once.
pub type LogSink = Arc<dyn Fn(Level, &str, &str) + Send + Sync>;

/// The sink and the most verbose level it takes.
static SINK: RwLock<Option<LogSink>> = RwLock::new(None);
/// That level as a number (see [`level_number`]); 0 while no sink is set,
/// read on every record without taking the lock.
static SINK_LEVEL: AtomicU8 = AtomicU8::new(0);
/// Whether [`init`] installed this module's subscriber.
static INSTALLED: OnceCell<bool> = OnceCell::new();

fn level_of(number: u8) -> Level {
    match number {
        1 => Level::ERROR,
        2 => Level::WARN,
        3 => Level::INFO,
        4 => Level::DEBUG,
        _ => Level::TRACE,
    }
}

fn level_number(level: Level) -> u8 {
    match level {
        Level::ERROR => 1,
        Level::WARN => 2,
        Level::INFO => 3,
        Level::DEBUG => 4,
        Level::TRACE => 5,
    }
}

/// How stderr's records are written (`CAS_LOG_FORMAT`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Format {
    Text,
    /// tracing-subscriber's JSON: one object a line, with `timestamp`,
    /// `level`, `target` and `fields` (the message among them).
    Json,
}

/// The format `CAS_LOG_FORMAT` names (unset or empty: text), or the value
/// it holds if that names none.
fn format_from(value: Option<&str>) -> std::result::Result<Format, String> {
    match value.map(str::trim) {
        None | Some("") => Ok(Format::Text),
        Some(v) if v.eq_ignore_ascii_case("text") => Ok(Format::Text),
        Some(v) if v.eq_ignore_ascii_case("json") => Ok(Format::Json),
        Some(other) => Err(other.to_string()),
    }
}

/// Installs the process's logger, once: records go to the sink if one is
/// set, else to stderr filtered by `CAS_LOG` (default `warn`), as text
/// with ANSI colours only when stderr is a terminal, or as JSON lines with
/// `CAS_LOG_FORMAT=json` (any other value is warned about, and text kept).
/// Does nothing if the host program installed a tracing subscriber already.
pub fn init() {
    INSTALLED.get_or_init(|| {
        let env = || EnvFilter::try_from_env(ENV_VAR).unwrap_or_else(|_| EnvFilter::new("warn"));
        let value = std::env::var(FORMAT_VAR).ok();
        let format = format_from(value.as_deref());
        let text = (format != Ok(Format::Json)).then(|| {
            tracing_subscriber::fmt::layer()
                .with_writer(std::io::stderr)
                .with_ansi(std::io::stderr().is_terminal())
                .with_filter(env().and(SinkFilter(false)))
        });
        let json = (format == Ok(Format::Json)).then(|| {
            tracing_subscriber::fmt::layer()
                .json()
                .with_writer(std::io::stderr)
                .with_filter(env().and(SinkFilter(false)))
        });
        let to_sink = SinkLayer.with_filter(SinkFilter(true));
        let installed = tracing_subscriber::registry().with(text).with(json).with(to_sink).try_init().is_ok();
        if let Err(unknown) = format {
            tracing::warn!("{FORMAT_VAR}={unknown:?} is not a log format (json or text): logging as text");
        }
        installed
    });
}

/// Sends records up to `level` (the most verbose taken) to `sink` instead
/// of stderr; `None` goes back to stderr. When this returns, the previous
/// sink is not running and will not be called again. A sink must not call
/// this function. Fails if the host program installed its own tracing
/// subscriber, which then receives the records.
pub fn set_sink(sink: Option<(Level, LogSink)>) -> crate::Result<()> {
    init();
    if INSTALLED.get() != Some(&true) {
        return Err(crate::Error::InvalidArgument(
            "this process installed its own tracing subscriber, which receives CAS's logs".into(),
        ));
    }
    // Taking the write lock waits for calls of the previous sink to end.
    let mut slot = SINK.write().unwrap_or_else(|poisoned| poisoned.into_inner());
    let level = sink.as_ref().map_or(0, |(level, _)| level_number(*level));
    *slot = sink.map(|(_, sink)| sink);
    SINK_LEVEL.store(level, Ordering::Relaxed);
    drop(slot);
    tracing::callsite::rebuild_interest_cache();
    Ok(())
}

/// Whether a record goes to the sink (`SinkFilter(true)`) or, with no sink
/// set, elsewhere (`SinkFilter(false)`). [`set_sink`] rebuilds the cached
/// interest of every callsite, so records the sink does not take cost
/// nothing.
struct SinkFilter(bool);

impl SinkFilter {
    fn takes(&self, meta: &Metadata<'_>) -> bool {
        let level = SINK_LEVEL.load(Ordering::Relaxed);
        match self.0 {
            true => level_number(*meta.level()) <= level,
            false => level == 0,
        }
    }
}

impl<S> Filter<S> for SinkFilter {
    fn enabled(&self, meta: &Metadata<'_>, _: &Context<'_, S>) -> bool {
        self.takes(meta)
    }

    fn callsite_enabled(&self, meta: &'static Metadata<'static>) -> Interest {
        if self.takes(meta) {
            Interest::always()
        } else {
            Interest::never()
        }
    }

    fn max_level_hint(&self) -> Option<LevelFilter> {
        let level = SINK_LEVEL.load(Ordering::Relaxed);
        match (self.0, level) {
            (true, 0) | (false, 1..) => Some(LevelFilter::OFF),
            (true, _) => Some(LevelFilter::from_level(level_of(level))),
            (false, 0) => None,
        }
    }
}

/// The layer that hands records to the sink.
struct SinkLayer;

impl<S: Subscriber> Layer<S> for SinkLayer {
    fn on_event(&self, event: &Event<'_>, _ctx: Context<'_, S>) {
        let slot = SINK.read().unwrap_or_else(|poisoned| poisoned.into_inner());
        let Some(sink) = slot.as_ref() else { return };
        let mut message = Message::default();
        event.record(&mut message);
        let meta = event.metadata();
        sink(*meta.level(), meta.target(), &message.text());
    }
}

/// The message of a record, then its other fields as ` name=value`.
#[derive(Default)]
struct Message {
    message: String,
    fields: String,
}

impl Message {
    fn text(self) -> String {
        match (self.message.is_empty(), self.fields.is_empty()) {
            (_, true) => self.message,
            (true, false) => self.fields,
            (false, false) => format!("{} {}", self.message, self.fields),
        }
    }
}

impl Visit for Message {
    fn record_debug(&mut self, field: &Field, value: &dyn std::fmt::Debug) {
        use std::fmt::Write;
        if field.name() == "message" {
            let _ = write!(self.message, "{value:?}");
        } else {
            let sep = if self.fields.is_empty() { "" } else { " " };
            let _ = write!(self.fields, "{sep}{}={value:?}", field.name());
        }
    }
}

#[cfg(test)]
mod tests {
    use std::sync::Mutex;

    use super::*;

    #[test]
    fn formats_by_name() {
        assert_eq!(format_from(None), Ok(Format::Text));
        assert_eq!(format_from(Some("")), Ok(Format::Text));
        assert_eq!(format_from(Some("text")), Ok(Format::Text));
        assert_eq!(format_from(Some(" JSON ")), Ok(Format::Json));
        assert_eq!(format_from(Some("yaml")), Err("yaml".to_string()));
    }

    #[test]
    fn a_sink_takes_records_up_to_its_level_then_stderr_again() {
        let seen = Arc::new(Mutex::new(Vec::new()));
        let into = seen.clone();
        let sink: LogSink = Arc::new(move |level, target, message| {
            into.lock().unwrap().push(format!("{level} {target} {message}"));
        });
        set_sink(Some((Level::INFO, sink))).unwrap();
        tracing::info!(peer = 7, "hello");
        tracing::debug!("too verbose");
        set_sink(None).unwrap();
        tracing::warn!("to stderr");
        assert_eq!(*seen.lock().unwrap(), ["INFO cas_core::logging::tests hello peer=7"]);
    }
}
