//! Logging to stderr with `tracing`, the same for every daemon: a filter from
//! an environment variable (`OCA_LOG=debug`, default `info`), colour only on a
//! terminal (journald and files get plain text), text or JSON lines.

/// How log lines are written.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, serde::Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum LogFormat {
    #[default]
    Text,
    Json,
}

/// Install the global subscriber. `filter_env` names the variable holding an
/// `EnvFilter` directive; an unset or unparsable one means `info`.
pub fn init(filter_env: &str, format: LogFormat) {
    let filter = tracing_subscriber::EnvFilter::try_from_env(filter_env)
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info"));
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_ansi(std::io::IsTerminal::is_terminal(&std::io::stderr()))
        .with_writer(std::io::stderr);
    match format {
        LogFormat::Json => builder.json().init(),
        LogFormat::Text => builder.init(),
    }
}
