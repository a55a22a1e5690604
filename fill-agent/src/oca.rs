//! oca's admin listener as the agent uses it: told about every object
//! committed or removed (it also finds committed objects on first request,
//! but would not report them until then), and asked for access statistics
//! to order evictions.

use std::path::Path;
use std::time::Duration;

/// Access statistics of one rendition, as oca's `/store/renditions` has them.
#[derive(Debug, Clone, PartialEq, Eq, serde::Deserialize)]
pub struct RenditionStat {
    pub rendition: String,
    pub hits: u64,
    /// Unix seconds of the last request.
    pub last_access: u64,
}

#[derive(Debug)]
pub struct OcaAdmin {
    base: String,
    http: reqwest::Client,
}

impl OcaAdmin {
    /// `base` is the admin listener's URL, e.g. `http://127.0.0.1:9090`;
    /// `token_file` holds this agent's bearer token when oca asks callers
    /// for one, `ca_file` the CA of an admin listener on TLS.
    pub fn new(
        base: &str,
        ca_file: Option<&Path>,
        token_file: Option<&Path>,
    ) -> Result<OcaAdmin, String> {
        Ok(OcaAdmin {
            base: base.trim_end_matches('/').to_owned(),
            http: control_client::admin_client(Duration::from_secs(2), ca_file, token_file)?,
        })
    }

    /// Tell oca that `key` was committed or removed. Failures are logged, not
    /// returned: oca catches up on its own, only later.
    pub async fn refresh(&self, key: &str) {
        let url = format!("{}/store/refresh/{key}", self.base);
        match self.http.post(&url).send().await {
            Ok(r) if r.status().is_success() => {}
            Ok(r) => tracing::warn!(%key, status = %r.status(), "oca refused a refresh"),
            Err(e) => tracing::warn!(%key, error = %e, "cannot reach oca's admin listener"),
        }
    }

    /// Access statistics per rendition; none when oca does not answer (then
    /// recency is unknown and size alone orders evictions).
    pub async fn rendition_stats(&self) -> Vec<RenditionStat> {
        match self
            .http
            .get(format!("{}/store/renditions", self.base))
            .send()
            .await
        {
            Ok(r) if r.status().is_success() => r.json().await.unwrap_or_default(),
            Ok(r) => {
                tracing::warn!(status = %r.status(), "oca refused its access statistics");
                Vec::new()
            }
            Err(e) => {
                tracing::warn!(error = %e, "no access statistics from oca");
                Vec::new()
            }
        }
    }
}
