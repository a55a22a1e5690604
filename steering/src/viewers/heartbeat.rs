//! `POST /v1/plays/{id}/heartbeat`: a player says every few seconds where it
//! is and how its downloads went. One call keeps the stream counted as
//! active, saves the resume position (a separate bookmark post is not
//! needed), ends the stream when the player says `ended`, and hands the
//! per-segment samples to the fleet half, which learns from them how well
//! each appliance serves the player's network.

use std::net::SocketAddr;
use std::sync::Arc;

use axum::body::Bytes;
use axum::extract::rejection::BytesRejection;
use axum::extract::{ConnectInfo, Path, Query, State};
use axum::http::{HeaderMap, StatusCode};
use serde::{Deserialize, Serialize};

use super::beats::Watching;
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

#[derive(Debug, Deserialize)]
pub struct BeatQuery {
    /// The play's own signature (`heartbeat_url`), instead of a viewer token.
    token: Option<String>,
}

/// Who may heartbeat: the holder of the play's signed heartbeat URL (checked
/// without the store), or a viewer by token (the play must be theirs).
enum Caller {
    Play,
    Viewer(String),
}

async fn caller(
    state: &Viewers,
    id: &str,
    token: Option<&str>,
    peer: SocketAddr,
    headers: &HeaderMap,
    now: u64,
) -> Result<Caller, ApiError> {
    let Some(token) = token else {
        let viewer = accounts::authenticate(state, headers, now).await?;
        return Ok(Caller::Viewer(viewer.user.id));
    };
    let client = super::play::client_of(state, peer, headers);
    let path = format!("/v1/plays/{id}/heartbeat");
    super::play::check_signed(state, token, &path, client, now, "heartbeat URL")?;
    Ok(Caller::Play)
}

/// `POST /v1/plays/{id}/heartbeat`. Answered from memory: the caller by the
/// play's signature (or a viewer token), the play as `beats` keeps it (read
/// from the store once if it started elsewhere), the sighting, the position
/// and an end left for the next batched write (`viewers::beats`).
pub async fn heartbeat(
    State(state): State<Arc<Viewers>>,
    ConnectInfo(peer): ConnectInfo<SocketAddr>,
    Path(id): Path<String>,
    Query(q): Query<BeatQuery>,
    headers: HeaderMap,
    body: Result<Bytes, BytesRejection>,
) -> Result<axum::Json<HeartbeatAnswer>, ApiError> {
    let now = crate::unix_now();
    let caller = caller(&state, &id, q.token.as_deref(), peer, &headers, now).await?;
    let req: HeartbeatRequest = json(body)?;
    let unknown = || {
        ApiError::new(
            StatusCode::NOT_FOUND,
            "unknown_play",
            "no such active play of yours",
        )
    };
    let watching = match state.beats.watching(&id) {
        Some(w) => w,
        None => {
            let stream = state.store.stream(&id).await?.ok_or_else(unknown)?;
            if stream.ended.is_some() {
                return Err(unknown());
            }
            let issued: Issued = serde_json::from_str(&stream.body).map_err(|e| {
                ApiError::new(
                    StatusCode::INTERNAL_SERVER_ERROR,
                    "corrupt_play",
                    format!("the play's record does not parse: {e}"),
                )
            })?;
            state.beats.started(
                &id,
                Watching {
                    user: stream.user,
                    profile: stream.profile,
                    title: stream.title,
                    client: stream.client.parse().ok(),
                    pathways: issued.pathways.into_iter().map(|p| p.id).collect(),
                },
                stream.last_seen,
            )
        }
    };
    if let Caller::Viewer(user) = &caller
        && *user != watching.user
    {
        return Err(unknown());
    }
    let pathways: Vec<&str> = watching.pathways.iter().map(String::as_str).collect();
    check(&req, &pathways)?;
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
        && let Some(client) = watching.client
    {
        state.steerer.measured(client, &id, &samples);
        state.metrics.path_samples.inc_by(samples.len() as u64);
    }
    state.metrics.play_heartbeats.inc();
    let ended = req.state == PlayState::Ended;
    let mut degraded = Vec::new();
    if !ended {
        state.beats.seen(&id, &watching, req.position, now);
        if state.beats.marks_failing() {
            degraded.push("bookmarks");
        }
    } else {
        // The viewer may press play again at once, here or on another
        // instance: the end and the position are written now.
        state.beats.forget(&id);
        let w = &watching;
        if let Some(position) = req.position {
            match state
                .bookmarks
                .put(&w.user, &w.profile, &w.title, position, now)
                .await
            {
                // An older waiting position must not overwrite it.
                Ok(()) => state.beats.written(&w.user, &w.profile, &w.title),
                // The flush tries again.
                Err(_) => {
                    state.beats.wait_position(w, position, now);
                    degraded.push("bookmarks");
                }
            }
        }
        match super::beats::end(&state, &id, &w.user, now).await {
            Ok(true) => {}
            Ok(false) => return Err(unknown()),
            Err(e) => {
                return Err(ApiError::new(
                    StatusCode::SERVICE_UNAVAILABLE,
                    "store_unavailable",
                    format!("cannot end the play now: {e}"),
                ));
            }
        }
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
