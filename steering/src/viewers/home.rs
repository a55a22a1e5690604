//! `GET /v1/home`: rows of titles. Personalised rows come from a configured
//! recommendation backend; when it is unset, slow or down, the page is built
//! from what steering has itself: popular titles in the viewer's region (recent
//! plays with time decay) and a continue-watching row from bookmarks.

use std::collections::HashMap;

use serde::{Deserialize, Serialize};

use crate::deps::{DepError, Guard};

/// The backend's answer: `{"rows": [{"title": "...", "items": ["t1", ...]}]}`.
#[derive(Debug, Deserialize)]
struct BackendRows {
    rows: Vec<BackendRow>,
}

#[derive(Debug, Deserialize)]
struct BackendRow {
    title: String,
    items: Vec<String>,
}

#[derive(Debug, Serialize, PartialEq)]
pub struct Row {
    pub title: String,
    /// `personalised`, `popular` or `continue-watching`.
    pub kind: &'static str,
    pub items: Vec<Item>,
}

#[derive(Debug, Serialize, PartialEq)]
pub struct Item {
    pub id: String,
    pub name: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub resume_position: Option<f64>,
}

#[derive(Debug, Serialize)]
pub struct Home {
    pub rows: Vec<Row>,
    /// True when the personalised source was not used.
    pub fallback: bool,
    /// Dependencies that failed while building this page.
    pub degraded: Vec<&'static str>,
}

pub struct Recommendations {
    url: Option<String>,
    client: Option<reqwest::Client>,
    pub guard: Guard,
}

impl Recommendations {
    pub fn new(url: Option<String>, guard: Guard, timeout: std::time::Duration) -> Recommendations {
        let client = url.as_ref().and_then(|_| {
            control_client::http_client(timeout, None)
                .map_err(|e| tracing::error!(error = %e, "recommendations disabled: cannot build HTTP client"))
                .ok()
        });
        Recommendations { url, client, guard }
    }

    pub fn configured(&self) -> bool {
        self.client.is_some()
    }

    /// Personalised rows as `(row title, title ids)`.
    pub async fn rows(
        &self,
        user: &str,
        profile: &str,
        region: &str,
    ) -> Result<Vec<(String, Vec<String>)>, DepError> {
        let (Some(url), Some(client)) = (&self.url, &self.client) else {
            return Err(DepError::Failed(self.guard.name(), "not configured".into()));
        };
        let req =
            client
                .get(url)
                .query(&[("user", user), ("profile", profile), ("region", region)]);
        let body: BackendRows = self
            .guard
            .call(async move {
                let resp = req.send().await.map_err(|e| e.to_string())?;
                if !resp.status().is_success() {
                    return Err(format!("HTTP {}", resp.status()));
                }
                resp.json::<BackendRows>().await.map_err(|e| e.to_string())
            })
            .await?;
        Ok(body.rows.into_iter().map(|r| (r.title, r.items)).collect())
    }
}

/// Titles ranked by plays with exponential time decay (`half_life` seconds):
/// a play an hour ago counts more than one last week. Ties break by id so the
/// order is stable.
pub fn popularity(plays: &[(String, u64)], now: u64, half_life: f64) -> Vec<(String, f64)> {
    let mut score: HashMap<&str, f64> = HashMap::new();
    for (title, at) in plays {
        let age = now.saturating_sub(*at) as f64;
        *score.entry(title).or_default() += (-age * std::f64::consts::LN_2 / half_life).exp();
    }
    let mut ranked: Vec<(String, f64)> =
        score.into_iter().map(|(t, s)| (t.to_owned(), s)).collect();
    ranked.sort_by(|a, b| b.1.total_cmp(&a.1).then_with(|| a.0.cmp(&b.0)));
    ranked
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn recent_plays_outweigh_old_ones() {
        let day = 86_400;
        let now = 10 * day;
        let plays: Vec<(String, u64)> = [
            ("old", now - 5 * day),
            ("old", now - 5 * day),
            ("old", now - 5 * day),
            ("new", now - 100),
            ("new", now - 200),
            ("b", now),
            ("a", now),
        ]
        .iter()
        .map(|(t, at)| (t.to_string(), *at))
        .collect();
        let ranked: Vec<String> = popularity(&plays, now, day as f64)
            .into_iter()
            .map(|(t, _)| t)
            .collect();
        assert_eq!(ranked, ["new", "a", "b", "old"]);
    }
}
