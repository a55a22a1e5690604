//! The viewers half's part of the store: accounts, profiles, viewer tokens and
//! streams; and the demand log (`plays`), which a started stream appends to and
//! home rows read (fill planning reads it too, from the fleet's part).

use async_trait::async_trait;

use crate::store::{CatalogStore, StoreError};

/// A subscriber account: just enough to authorise a play.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct UserRow {
    pub id: String,
    pub plan: String,
    /// `active`, `suspended` or `cancelled`.
    pub subscription: String,
    pub country: String,
    pub region: String,
}

/// A play in progress. `body` is the play's issued state (renditions and
/// pathways with their signed base URLs) as JSON, so manifests can be rebuilt
/// after a restart exactly as first handed out.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StreamRow {
    pub id: String,
    pub user: String,
    pub profile: String,
    pub title: String,
    pub client: String,
    pub body: String,
    pub expires: u64,
    pub started: u64,
    pub last_seen: u64,
    /// When the player said it stopped.
    pub ended: Option<u64>,
}

/// What the viewers half persists, whichever backend holds it.
#[async_trait]
pub trait ViewerStore: CatalogStore {
    /// Create a user with its profiles; fails if the id exists.
    async fn add_user(
        &self,
        u: &UserRow,
        profiles: &[(String, String)],
        now: u64,
    ) -> Result<(), StoreError>;
    /// Change a user's plan, subscription or home; false if there is no such user.
    async fn update_user(&self, u: &UserRow) -> Result<bool, StoreError>;
    async fn add_profile(&self, user: &str, id: &str, name: &str) -> Result<(), StoreError>;
    async fn user(&self, id: &str) -> Result<Option<UserRow>, StoreError>;
    async fn users(&self) -> Result<Vec<UserRow>, StoreError>;
    /// `(id, name)` of a user's profiles.
    async fn profiles(&self, user: &str) -> Result<Vec<(String, String)>, StoreError>;
    /// Record a viewer token by its hash (the token itself is never stored).
    async fn add_viewer_token(
        &self,
        sha256: &str,
        user: &str,
        now: u64,
        expires: u64,
    ) -> Result<(), StoreError>;
    /// The user a (hashed) viewer token belongs to, if it has not expired.
    async fn user_by_token(&self, sha256: &str, now: u64) -> Result<Option<UserRow>, StoreError>;
    /// Start a stream if the user has fewer than `max_streams` active ones
    /// (seen since `active_since`); the count and the insert are one
    /// transaction, so two plays racing cannot both take the last slot. The play
    /// is recorded for popularity in the same transaction.
    /// Returns the active count when the limit is reached.
    async fn start_stream(
        &self,
        s: &StreamRow,
        region: &str,
        max_streams: u32,
        active_since: u64,
    ) -> Result<Result<(), u32>, StoreError>;
    async fn stream(&self, id: &str) -> Result<Option<StreamRow>, StoreError>;
    /// Keep a stream counted as active; false if it is not the user's or has ended.
    async fn touch_stream(&self, id: &str, user: &str, now: u64) -> Result<bool, StoreError>;
    /// Keep many streams counted as active in one transaction: `(id, user,
    /// seen at)`. The ids not touched (not the user's, ended, unknown).
    async fn touch_streams(
        &self,
        seen: &[(String, String, u64)],
    ) -> Result<Vec<String>, StoreError>;
    /// End many streams in one transaction: `(id, user, ended at)`. The ids
    /// not ended (not the user's, already ended, unknown).
    async fn end_streams(&self, ended: &[(String, String, u64)])
    -> Result<Vec<String>, StoreError>;
    /// End a stream (the player stopped); false if it is not the user's.
    async fn end_stream(&self, id: &str, user: &str, now: u64) -> Result<bool, StoreError>;
    /// Count one more licence for `play` if it has had fewer than `max`:
    /// the new count, or None at the limit (one statement, so instances
    /// sharing the store cannot both take the last one).
    async fn count_licence(&self, play: &str, max: u32) -> Result<Option<u32>, StoreError>;
    /// The distinct titles a profile played, most recently played first.
    async fn history(
        &self,
        user: &str,
        profile: &str,
        limit: u32,
    ) -> Result<Vec<String>, StoreError>;
    /// Plays since `since` with who played them (profile `user/profile`),
    /// newest first, at most `limit`: what recommendations learn from.
    async fn viewing_since(
        &self,
        since: u64,
        limit: u32,
    ) -> Result<Vec<crate::reco::model::Event>, StoreError>;
    /// `(title, at)` of plays in `region` since `since`, newest first, at most `limit`.
    async fn plays_since(
        &self,
        region: &str,
        since: u64,
        limit: u32,
    ) -> Result<Vec<(String, u64)>, StoreError>;
}

mod postgres;
mod sqlite;
