//! `POST /v1/plays/{id}/heartbeat`: a player says every few seconds where it
//! is and how its downloads went. One call keeps the stream counted as
//! active, saves the resume position (a separate bookmark post is not
//! needed), ends the stream when the player says `ended`, and hands the
//! per-segment samples to the fleet half, which learns from them how well
//! each appliance serves the player's network.

use std::sync::Arc;

use axum::body::Bytes;
use axum::extract::rejection::BytesRejection;
use axum::extract::{Path, State};
use axum::http::{HeaderMap, StatusCode};
use serde::{Deserialize, Serialize};

use super::play::Issued;
use super::{Viewers, accounts};
use crate::fleet::measure::Sample;
use crate::http::{ApiError, json};

/// What a player is doing.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum PlayState {
    Playing,
    Buffering,
    Paused,
    Ended,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct HeartbeatRequest {
    /// Seconds into the title.
    pub position: Option<f64>,
    pub state: PlayState,
    /// Segments downloaded since the last heartbeat.
    #[serde(default)]
    pub samples: Vec<SampleWire>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SampleWire {
    /// The pathway (appliance id, or `origin`) it came from.
    pub pathway: String,
    pub bytes: u64,
    pub ttfb_ms: f64,
    pub download_ms: f64,
    #[serde(default)]
    pub error: bool,
}

#[derive(Debug, Serialize)]
pub struct HeartbeatAnswer {
    /// Samples taken (those from the origin are not appliance measurements).
    pub samples: usize,
    pub ended: bool,
    /// Dependencies that failed (the position was not saved).
    pub degraded: Vec<&'static str>,
}

/// Most samples in one heartbeat: a few seconds of segments, with room.
pub const MAX_SAMPLES: usize = 120;
/// Nothing real takes longer: a sample beyond is absurd.
const MAX_MS: f64 = 600_000.0;
const MAX_BYTES: u64 = 1 << 30;

fn bad(message: String) -> ApiError {
    ApiError::new(StatusCode::UNPROCESSABLE_ENTITY, "bad_heartbeat", message)
}

/// Checks that need no store: numbers in range, pathways of this play.
pub fn check(req: &HeartbeatRequest, pathways: &[&str]) -> Result<(), ApiError> {
    if let Some(p) = req.position
        && !(p.is_finite() && (0.0..=1e7).contains(&p))
    {
        return Err(bad("position: seconds from 0".into()));
    }
    if req.samples.len() > MAX_SAMPLES {
        return Err(bad(format!("at most {MAX_SAMPLES} samples a heartbeat")));
    }
    for (i, s) in req.samples.iter().enumerate() {
        let ms = |v: f64| v.is_finite() && (0.0..=MAX_MS).contains(&v);
        if !ms(s.ttfb_ms) || !ms(s.download_ms) || s.ttfb_ms > s.download_ms {
            return Err(bad(format!(
                "samples[{i}]: ttfb_ms and download_ms from 0 to {MAX_MS}, ttfb_ms not after download_ms"
            )));
        }
        if s.bytes > MAX_BYTES {
            return Err(bad(format!("samples[{i}]: at most {MAX_BYTES} bytes")));
        }
        if !pathways.contains(&s.pathway.as_str()) {
            return Err(bad(format!(
                "samples[{i}]: {:?} is not one of this play's pathways",
                s.pathway
            )));
        }
    }
    Ok(())
}

/// `POST /v1/plays/{id}/heartbeat`.
pub async fn heartbeat(
    State(state): State<Arc<Viewers>>,
    Path(id): Path<String>,
    headers: HeaderMap,
    body: Result<Bytes, BytesRejection>,
) -> Result<axum::Json<HeartbeatAnswer>, ApiError> {
    let now = crate::unix_now();
    let viewer = accounts::authenticate(&state, &headers, now).await?;
    let req: HeartbeatRequest = json(body)?;
    let unknown = || {
        ApiError::new(
            StatusCode::NOT_FOUND,
            "unknown_play",
            "no such active play of yours",
        )
    };
    // Touched first: the stream stays active whatever else fails.
    if !state.store.touch_stream(&id, &viewer.user.id, now).await? {
        return Err(unknown());
    }
    let stream = state.store.stream(&id).await?.ok_or_else(unknown)?;
    let issued: Issued = serde_json::from_str(&stream.body).map_err(|e| {
        ApiError::new(
            StatusCode::INTERNAL_SERVER_ERROR,
            "corrupt_play",
            format!("the play's record does not parse: {e}"),
        )
    })?;
    let pathways: Vec<&str> = issued.pathways.iter().map(|p| p.id.as_str()).collect();
    check(&req, &pathways)?;
    let mut degraded = Vec::new();
    if let Some(position) = req.position
        && state
            .bookmarks
            .put(
                &viewer.user.id,
                &stream.profile,
                &stream.title,
                position,
                now,
            )
            .await
            .is_err()
    {
        degraded.push("bookmarks");
    }
    let samples: Vec<Sample> = req
        .samples
        .iter()
        .filter(|s| s.pathway != "origin")
        .map(|s| Sample {
            appliance: s.pathway.clone(),
            bytes: s.bytes,
            ttfb_ms: s.ttfb_ms,
            download_ms: s.download_ms,
            error: s.error,
        })
        .collect();
    if !samples.is_empty()
        && let Ok(client) = stream.client.parse()
    {
        state.steerer.measured(client, &id, &samples);
    }
    state.metrics.play_heartbeats.inc();
    let ended = req.state == PlayState::Ended;
    if ended {
        state.store.end_stream(&id, &viewer.user.id, now).await?;
    }
    Ok(axum::Json(HeartbeatAnswer {
        samples: samples.len(),
        ended,
        degraded,
    }))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn req(samples: Vec<SampleWire>) -> HeartbeatRequest {
        HeartbeatRequest {
            position: Some(12.0),
            state: PlayState::Playing,
            samples,
        }
    }

    fn sample(pathway: &str, ttfb: f64, download: f64) -> SampleWire {
        SampleWire {
            pathway: pathway.into(),
            bytes: 1_000_000,
            ttfb_ms: ttfb,
            download_ms: download,
            error: false,
        }
    }

    #[test]
    fn absurd_or_foreign_samples_are_refused() {
        let ok = ["oca-a1", "origin"];
        assert!(check(&req(vec![sample("oca-a1", 5.0, 80.0)]), &ok).is_ok());
        for (what, r) in [
            ("negative", req(vec![sample("oca-a1", -1.0, 80.0)])),
            (
                "first byte after the last",
                req(vec![sample("oca-a1", 90.0, 80.0)]),
            ),
            (
                "ten minutes and more",
                req(vec![sample("oca-a1", 5.0, 700_000.0)]),
            ),
            ("not a number", req(vec![sample("oca-a1", f64::NAN, 80.0)])),
            (
                "another play's appliance",
                req(vec![sample("oca-z9", 5.0, 80.0)]),
            ),
            (
                "too many",
                req((0..=MAX_SAMPLES)
                    .map(|_| sample("oca-a1", 5.0, 80.0))
                    .collect()),
            ),
        ] {
            let e = check(&r, &ok).unwrap_err();
            assert_eq!(e.code(), "bad_heartbeat", "{what}");
        }
        let mut r = req(vec![]);
        r.position = Some(f64::INFINITY);
        assert!(check(&r, &ok).is_err());
    }
}
