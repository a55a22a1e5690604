//! One simulated viewer: presses play (POST /v1/play), opens the
//! multivariant playlist, hands the play to [`Play`] (session.rs), then ends
//! it (a last heartbeat saying `ended`, or, without heartbeats, a bookmark
//! and a DELETE); and presses play again until the run ends.

use std::net::IpAddr;
use std::sync::Arc;
use std::time::Duration;

use serde::Deserialize;
use tokio::time::{Instant, sleep_until};

use crate::agent::{Agent, FetchError, Reply, Request};
use crate::hls::{self, Multivariant};
use crate::play_stats::{Live, PlayStats};
use crate::session::Play;
use crate::url::Url;

/// After a refused or failed play, wait this long before pressing play
/// again, unless steering said how long (`Retry-After`, which is then
/// followed, plus up to a second of jitter so refused viewers do not all
/// come back at once; at most `MAX_RETRY_AFTER`).
const RETRY_AFTER: Duration = Duration::from_secs(1);
const MAX_RETRY_AFTER: Duration = Duration::from_secs(30);

/// What every viewer of a run shares, read-only.
#[derive(Debug)]
pub struct Setup {
    /// Steering's instances in order of preference (`--steering`); the URLs
    /// below are under the first.
    pub steering: Vec<Url>,
    pub play_url: Url,
    pub bookmarks_url: Url,
    /// `…/v1/plays/`: a play is deleted at this + its id.
    pub plays_url: Url,
    pub tokens: Vec<String>,
    /// The body of POST /v1/play.
    pub play_body: Vec<u8>,
    pub watch: Option<Duration>,
    /// Buffer to start with; `None`: two segments' worth.
    pub startup: Option<Duration>,
    pub max_buffer: Duration,
    /// Report progress with heartbeats (`POST /v1/plays/{id}/heartbeat`:
    /// position, state, per-segment samples), or, if false, with bookmarks
    /// and a DELETE at the end, as players without heartbeats do.
    pub heartbeats: bool,
    /// How often a play reports its progress.
    pub report_every: Duration,
    pub timeout: Duration,
    pub tls: Option<Arc<rustls::ClientConfig>>,
    /// Packaged files to check segments against (`--verify`).
    pub verify: Option<Arc<crate::verify::Packaged>>,
    /// No play goes on past this.
    pub end: Instant,
    /// Closing requests (last heartbeat, or bookmark and DELETE) give up at this.
    pub grace_end: Instant,
}

/// Runs viewer `index` until the end of the run and returns what it measured.
pub async fn viewer(
    index: usize,
    setup: Arc<Setup>,
    source: Option<IpAddr>,
    live: Arc<Live>,
) -> PlayStats {
    let token = &setup.tokens[index % setup.tokens.len()];
    let mut v = Viewer {
        auth: format!("Bearer {token}"),
        source: source.map_or_else(|| "default".to_owned(), |ip| ip.to_string()),
        agent: Agent::new(source, setup.tls.clone()),
        instance: 0,
        stats: PlayStats::default(),
        setup: setup.clone(),
        live,
        retry_after: None,
        beat_url: None,
    };
    while Instant::now() < setup.end {
        match v.play().await {
            Next::Again => {}
            Next::RetryLater => {
                let wait = match v.retry_after.take() {
                    Some(secs) => {
                        Duration::from_secs(secs).min(MAX_RETRY_AFTER)
                            + Duration::from_millis(rand::random_range(0..1000))
                    }
                    None => RETRY_AFTER,
                };
                sleep_until((Instant::now() + wait).min(setup.end)).await
            }
            Next::Stop => break,
        }
    }
    v.stats
}

/// A viewer's identity, connections and measurements; its plays borrow it.
pub struct Viewer {
    pub setup: Arc<Setup>,
    auth: String,
    source: String,
    pub agent: Agent,
    /// The steering instance in use (an index into `setup.steering`).
    instance: usize,
    pub stats: PlayStats,
    pub live: Arc<Live>,
    /// The last refusal's `Retry-After`, seconds, taken by the next wait.
    retry_after: Option<u64>,
    /// The current play's signed heartbeat URL, if steering gave one.
    beat_url: Option<Url>,
}

enum Next {
    Again,
    RetryLater,
    Stop,
}

/// How a play ended.
pub enum End {
    /// Played to the end of the title, or for `--watch`.
    Completed,
    /// The run ended first.
    Cut,
    /// Something failed: the error key and a message.
    Failed(&'static str, String),
}

/// One downloaded (or failed) media segment, as a heartbeat reports it.
#[derive(Debug, Clone, serde::Serialize)]
pub struct Sample {
    /// The pathway (appliance id) it came from.
    pub pathway: String,
    pub bytes: u64,
    pub ttfb_ms: f64,
    pub download_ms: f64,
    pub error: bool,
}

/// The body of a heartbeat.
#[derive(Debug, serde::Serialize)]
pub struct Heartbeat {
    /// Seconds into the title; `None` before playback knew where it was.
    pub position: Option<f64>,
    /// `playing`, `buffering`, `paused` or `ended`.
    pub state: &'static str,
    pub samples: Vec<Sample>,
}

#[derive(Deserialize)]
struct Answer {
    play_id: String,
    #[serde(default)]
    manifests: Urls,
    #[serde(default)]
    content_steering: Urls,
    #[serde(default)]
    appliances: Vec<ApplianceRef>,
    #[serde(default)]
    resume_position: Option<f64>,
    #[serde(default)]
    drm_license_url: Option<String>,
    /// Signed for the play: heartbeats need no viewer token there.
    #[serde(default)]
    heartbeat_url: Option<String>,
}

#[derive(Deserialize, Default)]
struct Urls {
    hls: Option<String>,
}

#[derive(Deserialize)]
struct ApplianceRef {
    id: String,
    #[serde(default)]
    reason: String,
}

impl Viewer {
    async fn play(&mut self) -> Next {
        let pressed = Instant::now();
        let Some(answer) = self.press().await else {
            return if Instant::now() >= self.setup.end {
                Next::Stop
            } else {
                Next::RetryLater
            };
        };
        self.stats.started += 1;
        Live::bump(&self.live.plays, 1);
        let stop = match self.setup.watch {
            Some(w) => (pressed + w).min(self.setup.end),
            None => self.setup.end,
        };
        match self.open(&answer, stop).await {
            Ok((master, steering)) => {
                let first = answer.appliances.first();
                let primary = first.map(|a| a.id.clone());
                let primary = primary.or_else(|| master.primary.clone());
                let reason = first.map_or("unknown", |a| a.reason.as_str());
                let (source, primary) = (self.source.clone(), primary.unwrap_or_default());
                self.stats.play_from(&source, &primary, reason);
                let id = answer.play_id.clone();
                self.beat_url = answer
                    .heartbeat_url
                    .as_deref()
                    .and_then(|u| Url::parse(u).ok());
                let licence = answer
                    .drm_license_url
                    .as_deref()
                    .and_then(|u| Url::parse(u).ok());
                let mut p = Play::new(self, id, master, steering, pressed, stop);
                p.licence_url = licence;
                let end = p.run(answer.resume_position).await;
                let position = p.finish();
                let samples = p.take_samples();
                self.close(&answer.play_id, position, samples, end).await
            }
            Err(end) => self.close(&answer.play_id, None, Vec::new(), end).await,
        }
    }

    /// POST /v1/play: the answer, or `None` (counted) if there is none.
    async fn press(&mut self) -> Option<Answer> {
        let setup = self.setup.clone();
        let t0 = Instant::now();
        let deadline = (t0 + setup.timeout).min(setup.end);
        let result = self
            .post_json(&setup.play_url, &setup.play_body, true, deadline)
            .await;
        let reply = match result {
            Err(FetchError::Timeout) if Instant::now() >= setup.end => return None,
            Err(e) => {
                self.refused(e.label(), || {
                    format!("POST {}: {}", setup.play_url, e.label())
                });
                return None;
            }
            Ok(r) => r,
        };
        if reply.status != 200 {
            self.retry_after = reply.retry_after;
            let code = serde_json::from_slice::<serde_json::Value>(&reply.body)
                .ok()
                .and_then(|v| v["code"].as_str().map(str::to_owned));
            let key = match &code {
                Some(c) if valid_id(c) => format!("{} {c}", reply.status),
                _ => reply.status.to_string(),
            };
            self.refused(&key, || body_text(&reply));
            return None;
        }
        self.stats.answered(t0.elapsed());
        match serde_json::from_slice::<Answer>(&reply.body) {
            Ok(a) if valid_id(&a.play_id) => Some(a),
            Ok(a) => {
                self.refused("bad_answer", || format!("play_id {:?}", a.play_id));
                None
            }
            Err(e) => {
                self.refused("bad_answer", || format!("{e}: {}", body_text(&reply)));
                None
            }
        }
    }

    fn refused(&mut self, key: &str, message: impl FnOnce() -> String) {
        self.stats.refused(key, message);
        Live::bump(&self.live.errors, 1);
    }

    /// Fetches the multivariant playlist from steering; finds the
    /// content-steering URL (the answer's, else the playlist's).
    async fn open(
        &mut self,
        answer: &Answer,
        stop: Instant,
    ) -> Result<(Multivariant, Option<Url>), End> {
        let bad = |what: String| End::Failed("bad_answer", what);
        let hls = answer
            .manifests
            .hls
            .as_deref()
            .ok_or_else(|| bad("no manifests.hls".into()))?;
        let url = Url::parse(hls).map_err(|e| bad(format!("manifests.hls: {e:#}")))?;
        let steering = match answer.content_steering.hls.as_deref() {
            Some(s) => {
                Some(Url::parse(s).map_err(|e| bad(format!("content_steering.hls: {e:#}")))?)
            }
            None => None,
        };
        let deadline = (Instant::now() + self.setup.timeout).min(stop);
        let reply = match self.ask_steering(&Request::get(&url, true), deadline).await {
            Err(FetchError::Timeout) if Instant::now() >= stop => {
                return Err(if stop >= self.setup.end {
                    End::Cut
                } else {
                    End::Completed
                });
            }
            Err(e) => return Err(End::Failed("master", format!("{url}: {}", e.label()))),
            Ok(r) if !r.ok() => {
                return Err(End::Failed("master", format!("{url}: status {}", r.status)));
            }
            Ok(r) => r,
        };
        let master = hls::parse_multivariant(&reply.body, &url)
            .map_err(|e| End::Failed("bad_master", format!("{url}: {e:#}")))?;
        let steering = steering.or_else(|| master.steering.clone());
        Ok((master, steering))
    }

    /// Ends a play: records how, and tells steering so the play stops
    /// counting against the account's streams, saving the position: a last
    /// heartbeat saying `ended` (with the samples not yet sent), or a
    /// bookmark and a DELETE.
    async fn close(
        &mut self,
        play_id: &str,
        position: Option<f64>,
        samples: Vec<Sample>,
        end: End,
    ) -> Next {
        let next = match end {
            End::Completed => {
                self.stats.completed += 1;
                Next::Again
            }
            End::Cut => {
                self.stats.cut += 1;
                Next::Stop
            }
            End::Failed(key, message) => {
                self.stats.error(key, || message);
                Live::bump(&self.live.errors, 1);
                // A viewer that no appliance can serve gives up.
                if key == "all_pathways_failed" {
                    Next::Stop
                } else {
                    Next::RetryLater
                }
            }
        };
        let deadline = (Instant::now() + self.setup.timeout).min(self.setup.grace_end);
        if self.setup.heartbeats {
            let beat = Heartbeat {
                position,
                state: "ended",
                samples,
            };
            let ok = self.heartbeat(play_id, &beat, deadline).await;
            self.stats.heartbeats.count(ok);
            return next;
        }
        if let Some(position) = position {
            let ok = self.bookmark(play_id, position, deadline).await;
            self.stats.bookmarks.count(ok);
        }
        let setup = self.setup.clone();
        // Play ids were checked to be URL-safe, so the join cannot fail.
        if let Ok(url) = setup.plays_url.join(play_id) {
            let auth = self.auth.clone();
            let headers = [("Authorization", auth.as_str())];
            let req = Request {
                method: "DELETE",
                url: &url,
                headers: &headers,
                body: &[],
                keep: false,
            };
            let ok = self
                .ask_steering(&req, deadline)
                .await
                .is_ok_and(|r| r.ok());
            self.stats.deletes.count(ok);
        }
        next
    }

    /// A W3C Clear Key licence for `kids` from the play's licence URL, as a
    /// browser's CDM asks for it; true if steering answered with a key for
    /// each of them.
    pub async fn licence(&mut self, url: &Url, kids: &[[u8; 16]], deadline: Instant) -> bool {
        use base64::Engine;
        let b64 = |k: &[u8; 16]| base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(k);
        let ids: Vec<String> = kids.iter().map(b64).collect();
        let body = serde_json::json!({"kids": ids, "type": "temporary"}).to_string();
        let headers = [("Content-Type", "application/json")];
        let req = Request {
            method: "POST",
            url,
            headers: &headers,
            body: body.as_bytes(),
            keep: true,
        };
        let Ok(reply) = self.ask_steering(&req, deadline).await else {
            return false;
        };
        let granted = serde_json::from_slice::<serde_json::Value>(&reply.body)
            .ok()
            .and_then(|v| {
                let keys = v["keys"].as_array()?.clone();
                Some(
                    ids.iter()
                        .all(|id| keys.iter().any(|k| k["kid"] == id.as_str())),
                )
            });
        reply.ok() && granted == Some(true)
    }

    pub async fn bookmark(&mut self, play_id: &str, position: f64, deadline: Instant) -> bool {
        let body = serde_json::json!({"play_id": play_id, "position": position}).to_string();
        let setup = self.setup.clone();
        self.post_json(&setup.bookmarks_url, body.as_bytes(), false, deadline)
            .await
            .is_ok_and(|r| r.ok())
    }

    /// `POST /v1/plays/{id}/heartbeat`; true if steering took it.
    pub async fn heartbeat(&mut self, play_id: &str, beat: &Heartbeat, deadline: Instant) -> bool {
        let setup = self.setup.clone();
        let url = match self.beat_url.clone() {
            Some(u) => u,
            None => match setup.plays_url.join(&format!("{play_id}/heartbeat")) {
                Ok(u) => u,
                Err(_) => return false,
            },
        };
        let body = serde_json::to_vec(beat).unwrap_or_default();
        self.post_json(&url, &body, false, deadline)
            .await
            .is_ok_and(|r| r.ok())
    }

    /// POST a JSON `body` to steering as this viewer; `keep`: keep the answer's body.
    async fn post_json(
        &mut self,
        url: &Url,
        body: &[u8],
        keep: bool,
        deadline: Instant,
    ) -> Result<Reply, FetchError> {
        let auth = self.auth.clone();
        let headers = [
            ("Authorization", auth.as_str()),
            ("Content-Type", "application/json"),
        ];
        let req = Request {
            method: "POST",
            url,
            headers: &headers,
            body,
            keep,
        };
        self.ask_steering(&req, deadline).await
    }

    /// Sends `req` to steering: to the instance in use, and down the list
    /// (round to the top) when it refuses the connection, times out or
    /// answers 502/503/504, as a player given several control-plane URLs
    /// would. `req.url` may have been issued by any instance (a manifest, a
    /// content-steering URL): it is sent to the same path on the one in use.
    /// A URL under none of them is fetched as it is. Each attempt gets an
    /// equal share of the time left.
    pub async fn ask_steering(
        &mut self,
        req: &Request<'_>,
        deadline: Instant,
    ) -> Result<Reply, FetchError> {
        let setup = self.setup.clone();
        let bases = &setup.steering;
        let Some(issuer) = bases.iter().find(|b| req.url.is_under(b)) else {
            return self.agent.fetch(req, deadline).await;
        };
        let n = bases.len();
        let mut attempt = 0;
        loop {
            let i = (self.instance + attempt) % n;
            let url = req
                .url
                .rebased(issuer, &bases[i])
                .unwrap_or_else(|| req.url.clone());
            let now = Instant::now();
            let left = (n - attempt) as u32;
            let until = now + deadline.saturating_duration_since(now) / left;
            let result = self
                .agent
                .fetch(&Request { url: &url, ..*req }, until)
                .await;
            let failed = match &result {
                Err(_) => true,
                Ok(r) => matches!(r.status, 502..=504),
            };
            attempt += 1;
            if !failed || attempt == n || Instant::now() >= deadline {
                if !failed && i != self.instance {
                    self.instance = i;
                    self.stats.steering_failovers += 1;
                }
                return result;
            }
        }
    }
}

/// Ids that can go in a URL path and a report key unescaped.
fn valid_id(s: &str) -> bool {
    !s.is_empty()
        && s.len() <= 128
        && s.bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'-' | b'_' | b'.'))
        && s != "."
        && s != ".."
}

/// A response body for a report message: its first line, truncated.
fn body_text(r: &Reply) -> String {
    let text = String::from_utf8_lossy(&r.body);
    let line = text.lines().next().unwrap_or("");
    let cut: String = line.chars().take(200).collect();
    format!("status {}: {cut}", r.status)
}
