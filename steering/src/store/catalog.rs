//! The catalog, shared by both halves: titles → renditions → objects and the
//! packaged manifests, written by `catalog import` and read by plays (titles,
//! home rows) and by the fleet (totals for inventory completeness, fill plans).

use std::collections::HashMap;

use async_trait::async_trait;

use super::StoreError;
use crate::catalog::Title;

/// A title with what a play needs of it.
#[derive(Debug, Clone)]
pub struct TitleRecord {
    pub id: String,
    pub name: String,
    pub regions: Vec<String>,
    pub release: Option<u64>,
    pub renditions: Vec<TitleRendition>,
    /// `(kind, key, body)` of each packaged manifest.
    pub manifests: Vec<(String, String, String)>,
    /// Image file names in the title's directory.
    pub artwork: Vec<String>,
}

#[derive(Debug, Clone, PartialEq)]
pub struct TitleRendition {
    pub id: String,
    pub kind: String,
    pub codec: Option<String>,
    pub width: Option<u64>,
    pub height: Option<u64>,
    pub bandwidth: u64,
    pub protocol: String,
    pub segment_duration: f64,
    /// Key of its media playlist (HLS renditions).
    pub playlist: Option<String>,
}

/// What the catalog tables answer, whichever backend holds them.
#[async_trait]
pub trait CatalogStore: Send + Sync {
    /// Record a title with its renditions and objects, replacing what an earlier
    /// import recorded for it (so re-importing is idempotent), in one transaction.
    async fn put_title(&self, t: &Title) -> Result<(), StoreError>;
    /// Replace the content keys of `title` with `keys` (key ID in hex, the
    /// key sealed under the KEK); none: the title is clear.
    async fn put_content_keys(
        &self,
        title: &str,
        keys: &[(String, String)],
        now: u64,
    ) -> Result<(), StoreError>;
    /// `(key ID in hex, sealed key)` of every content key of `title`.
    async fn content_keys(&self, title: &str) -> Result<Vec<(String, String)>, StoreError>;
    /// A rendition's object count and total bytes, if it is in the catalog.
    async fn rendition_totals(&self, rendition: &str) -> Result<Option<(u64, u64)>, StoreError>;
    /// Object count and bytes of every catalog rendition.
    async fn catalog_totals(&self) -> Result<HashMap<String, (u64, u64)>, StoreError>;
    /// Titles, renditions, objects and bytes in the catalog.
    async fn catalog_counts(&self) -> Result<(u64, u64, u64, u64), StoreError>;
    /// A title with its renditions and packaged manifests.
    async fn title(&self, id: &str) -> Result<Option<TitleRecord>, StoreError>;
    /// `(id, name, regions)` of every title.
    /// Every title's id, name, regions and release, by id.
    async fn titles_brief(&self) -> Result<Vec<TitleBrief>, StoreError>;
}

/// What browsing, search and home rows need of a title.
#[derive(Debug, Clone, PartialEq, serde::Serialize)]
pub struct TitleBrief {
    pub id: String,
    pub name: String,
    /// Where it may be played (`*`: everywhere).
    pub regions: Vec<String>,
    /// Unix seconds before which it may not be played.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub release: Option<u64>,
    /// A launch's expected first-day audience (`title.toml`), for the demand
    /// forecast.
    #[serde(skip)]
    pub audience: Option<f64>,
}

impl TitleBrief {
    /// Whether an account in `region` of `country` may play it at `now`.
    pub fn playable(&self, region: &str, country: &str, now: u64) -> bool {
        self.regions
            .iter()
            .any(|r| r == "*" || r == region || r == country)
            && self.release.is_none_or(|t| t <= now)
    }

    /// Whether it is listed for an account in `region` of `country` (a title
    /// not yet released is listed, as coming).
    pub fn listed(&self, region: &str, country: &str) -> bool {
        self.regions
            .iter()
            .any(|r| r == "*" || r == region || r == country)
    }
}

mod postgres;
mod sqlite;
