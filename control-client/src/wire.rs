//! The control-plane API's request and response bodies: one definition, used by
//! steering (server) and by appliances (client), so the two cannot drift.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

/// API version prefix of every path.
pub const API: &str = "/v1";

/// Where an appliance sits in the delivery hierarchy.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize, PartialOrd, Ord)]
#[serde(rename_all = "kebab-case")]
pub enum Tier {
    /// Inside an ISP's network, serving that ISP's viewers.
    Embedded,
    /// At an internet exchange, serving a region.
    Ixp,
    /// The origin of last resort.
    Origin,
}

/// What an appliance tells the control plane about itself.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ApplianceInfo {
    pub tier: Tier,
    pub site: String,
    pub region: String,
    pub asn: u32,
    /// Base URL for plaintext object requests, e.g. `http://10.1.2.3:8080`.
    pub http_url: Option<String>,
    /// Base URL for HTTPS object requests.
    pub https_url: Option<String>,
    /// Base URL of the admin listener (`/health`, `/metrics`).
    pub admin_url: String,
    /// Egress capacity in bits per second.
    pub capacity_bps: u64,
    /// Size of the content disks in bytes (0: unknown); fill plans fit in it.
    #[serde(default)]
    pub storage_bytes: u64,
    /// Software version, for the registry.
    #[serde(default)]
    pub version: String,
}

/// `POST /v1/appliances/{id}/register`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RegisterRequest {
    pub info: ApplianceInfo,
}

/// `POST /v1/appliances/enroll`, with `Authorization: Bearer <enrolment
/// token>`: a new appliance joins with the one-time token an operator issued
/// (`steering appliances enroll`). The appliance chose its credential and
/// kept it on disk before asking, and sends only its SHA-256: a lost answer
/// is retried with the same token and credential and gets the same answer,
/// while anyone else presenting the token is refused.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct EnrolRequest {
    pub id: String,
    /// Lowercase hex SHA-256 of the credential the appliance will present.
    pub credential_sha256: String,
    pub info: ApplianceInfo,
}

/// Answer to an enrolment: the appliance is in the registry under `id` and
/// registers next as any other.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct EnrolResponse {
    pub id: String,
}

/// Answer to a registration: how often to heartbeat, and what the control plane
/// already knows of this appliance's inventory (so a restart does not force a
/// full resync when nothing changed).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct RegisterResponse {
    pub heartbeat_interval_ms: u64,
    pub inventory_version: u64,
    pub inventory_digest: String,
    pub keys_version: u64,
}

/// The appliance's state, as in its own /health.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct HealthSummary {
    /// `ok`, `degraded` or `draining`.
    pub status: String,
    pub egress_bps: u64,
    pub capacity_bps: u64,
    pub connections: u64,
}

/// One rendition held by an appliance: complete when every object is present.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
pub struct RenditionHolding {
    /// Rendition path prefix, e.g. `titles/t1/v720`.
    pub rendition: String,
    pub objects: u64,
    pub bytes: u64,
}

/// Inventory report: either everything, or what changed since `base_version`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "kebab-case")]
pub enum Inventory {
    Full {
        version: u64,
        digest: String,
        renditions: Vec<RenditionHolding>,
    },
    Delta {
        base_version: u64,
        version: u64,
        digest: String,
        upserted: Vec<RenditionHolding>,
        removed: Vec<String>,
    },
}

/// `POST /v1/appliances/{id}/heartbeat`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Heartbeat {
    pub health: HealthSummary,
    /// Absent when nothing changed since the last accepted report.
    pub inventory: Option<Inventory>,
    /// Client prefixes learned over BGP; absent when unchanged (or no BGP).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub prefixes: Option<PrefixReport>,
}

/// The client prefixes an appliance learned from the ISP's router, as a full
/// set or as the change since `base_version`. Prefixes are CIDR strings.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "kebab-case")]
pub enum PrefixReport {
    Full {
        version: u64,
        prefixes: Vec<String>,
        /// What the router attached to prefixes, for those it attached
        /// anything to (the rest have none).
        #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
        attrs: BTreeMap<String, RouteAttrs>,
    },
    Delta {
        base_version: u64,
        version: u64,
        /// New prefixes, and prefixes whose attributes changed (re-announced
        /// with all of them: one absent from `attrs` has none now).
        announced: Vec<String>,
        withdrawn: Vec<String>,
        #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
        attrs: BTreeMap<String, RouteAttrs>,
    },
}

/// What the ISP's router says of a prefix besides announcing it, for
/// steering's preferences: BGP communities (RFC 1997 as `"asn:value"`, RFC
/// 8092 large ones as `"global:data1:data2"`, all numeric) and the MED.
#[derive(Debug, Clone, Default, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RouteAttrs {
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub communities: Vec<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub med: Option<u32>,
}

impl RouteAttrs {
    /// Nothing attached.
    pub fn is_empty(&self) -> bool {
        self.communities.is_empty() && self.med.is_none()
    }
}

/// Answer to a heartbeat.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct HeartbeatResponse {
    /// The delta did not apply (lost report, unknown base): send a full inventory.
    pub resync: bool,
    /// Inventory version the control plane now holds.
    pub inventory_version: u64,
    /// Current key set version; fetch `/v1/keys` when it differs from yours.
    pub keys_version: u64,
    /// Prefix-set version the control plane now holds.
    #[serde(default)]
    pub prefixes_version: u64,
    /// The prefix delta did not apply: send the full set.
    #[serde(default)]
    pub prefixes_resync: bool,
    /// The control plane has not heard this appliance register since it
    /// (re)started, so what it holds about it may be stale (from its own
    /// config or database): register again.
    #[serde(default)]
    pub register: bool,
}

/// One URL-signing key as served to appliances.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct KeyWire {
    pub id: String,
    /// base64url secret.
    pub secret: String,
    pub not_before: Option<u64>,
    pub not_after: Option<u64>,
}

/// `GET /v1/keys`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct KeySetWire {
    pub version: u64,
    pub keys: Vec<KeyWire>,
}

/// `GET /v1/appliances/{id}/fill-plan`: what the appliance should hold, in
/// priority order, and where to fetch it from.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct FillPlan {
    pub appliance: String,
    /// Bumped whenever the plan's content changes.
    pub version: u64,
    /// Unix seconds.
    pub generated_at: u64,
    /// When the signed source URLs stop working (fetch a new plan before).
    pub expires: u64,
    pub window: FillWindow,
    /// Bytes the planned items may occupy (storage minus headroom); 0: unknown.
    pub budget_bytes: u64,
    /// Highest priority first.
    pub items: Vec<FillItem>,
}

/// The off-peak window in the appliance's local time, `HH:MM` each; a window
/// whose end is before its start runs over midnight.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct FillWindow {
    pub start: String,
    pub end: String,
    /// Local time = UTC + this.
    pub utc_offset_minutes: i32,
}

/// One rendition to hold.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct FillItem {
    pub rendition: String,
    pub title: String,
    /// Predicted demand (popularity with decay, plus a launch boost).
    pub score: f64,
    /// Fill now, inside or outside the window (a launch within the horizon).
    pub urgent: bool,
    /// Unix seconds before which not to start fetching it: launches are
    /// staggered across a region's appliances.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub not_before: Option<u64>,
    pub bytes: u64,
    pub objects: Vec<FillObject>,
    /// Where to fetch from, in order: peers, then the parent, then the origin.
    pub sources: Vec<FillSource>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct FillObject {
    pub key: String,
    pub size: u64,
    /// Lowercase hex SHA-256 of the content.
    pub sha256: String,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct FillSource {
    /// Appliance id, or `origin`.
    pub id: String,
    /// `peer`, `parent` or `origin`.
    pub kind: String,
    /// Signed base URL ending in `/`: an object's URL is this plus its key.
    pub base_url: String,
}

/// Every error body: a stable machine-readable code and a human message.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ErrorBody {
    pub code: String,
    pub message: String,
    /// Items the error is about (e.g. the renditions not in the catalog).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub details: Vec<String>,
}

/// A digest of an inventory: SHA-256 over the sorted `rendition objects bytes`
/// lines, hex. Both sides compute it the same way, so a mismatch means a report
/// was lost.
pub fn inventory_digest<'a>(renditions: impl IntoIterator<Item = &'a RenditionHolding>) -> String {
    let mut lines: Vec<String> = renditions
        .into_iter()
        .map(|r| format!("{} {} {}\n", r.rendition, r.objects, r.bytes))
        .collect();
    lines.sort();
    let mut ctx = ring::digest::Context::new(&ring::digest::SHA256);
    for l in &lines {
        ctx.update(l.as_bytes());
    }
    hex::encode(ctx.finish())
}

impl KeySetWire {
    /// The key set as `urlsign` signs and verifies with it.
    pub fn to_keyset(&self) -> Result<urlsign::KeySet, String> {
        use base64::Engine;
        let mut keys = Vec::with_capacity(self.keys.len());
        for k in &self.keys {
            let secret = base64::engine::general_purpose::URL_SAFE_NO_PAD
                .decode(k.secret.trim_end_matches('='))
                .map_err(|_| format!("key {}: secret is not base64url", k.id))?;
            keys.push(
                urlsign::Key::new(&k.id, &secret, k.not_before, k.not_after)
                    .map_err(|e| e.to_string())?,
            );
        }
        urlsign::KeySet::new(keys).map_err(|e| e.to_string())
    }
}
