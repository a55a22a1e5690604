//! The `/metrics` exposition every daemon serves the same way: a
//! prometheus-client registry rendered as OpenMetrics text.

use prometheus_client::registry::Registry;

/// What prometheus-client's text encoder writes: OpenMetrics 1.0 (it ends
/// with `# EOF`), which Prometheus negotiates and parses as such.
pub const CONTENT_TYPE: &str = "application/openmetrics-text; version=1.0.0; charset=utf-8";

/// The text exposition of `registry`.
pub fn render(registry: &Registry) -> String {
    let mut out = String::with_capacity(4096);
    // Writing into a String cannot fail.
    let _ = prometheus_client::encoding::text::encode(&mut out, registry);
    out
}

/// Tasks alive on the runtime rendering the metrics (0 outside one), for a
/// daemon that runs on one runtime (several: [`crate::Runtimes`]).
pub fn current_runtime_tasks() -> i64 {
    tokio::runtime::Handle::try_current().map_or(0, |h| {
        i64::try_from(h.metrics().num_alive_tasks()).unwrap_or(i64::MAX)
    })
}

#[cfg(test)]
mod tests {
    use prometheus_client::metrics::counter::Counter;

    use super::*;

    #[test]
    fn renders_openmetrics_text() {
        let mut registry = Registry::with_prefix("x");
        let c = Counter::<u64>::default();
        registry.register("things", "Things seen", c.clone());
        c.inc_by(3);
        let text = render(&registry);
        assert!(text.contains("# TYPE x_things counter"), "{text}");
        assert!(text.contains("x_things_total 3"), "{text}");
        assert!(text.ends_with("# EOF\n"), "{text}");
    }

    #[test]
    fn counts_the_tasks_of_the_current_runtime() {
        assert_eq!(current_runtime_tasks(), 0, "outside a runtime");
        let rt = tokio::runtime::Builder::new_current_thread()
            .build()
            .unwrap();
        let _idle = rt.spawn(std::future::pending::<()>());
        assert_eq!(rt.block_on(async { current_runtime_tasks() }), 1);
    }
}
