//! Logging set-up for every program: tracing to stderr only (stdout carries protocols).
//! `ANNEXGATE_LOG` sets the filter (e.g. `debug`, `annexgate=trace`); default `warn`.

/// Install the stderr subscriber. Safe to call more than once.
pub fn init() {
    let filter = tracing_subscriber::EnvFilter::try_from_env("ANNEXGATE_LOG")
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("warn"));
    let _ = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        .with_ansi(false)
        .with_target(false)
        .try_init();
}
