//! One play of a simulated viewer, from the multivariant playlist to the
//! end: pathway, variant, segments at playback pace, heartbeats (or
//! bookmarks), content steering polls and failover.
//!
//! The IO edge of the pure parts: [`abr::choose`] picks variants,
//! [`Playback`] says when to fetch and what the viewer saw, and
//! [`hls::pick_pathway`] picks pathways; this loop feeds them responses and
//! the clock.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;

use tokio::time::{Instant, sleep_until};

use crate::abr::{self, Throughput};
use crate::agent::{FetchError, Reply, Request};
use crate::hls::{self, Media, Multivariant};
use crate::play_stats::Live;
use crate::playback::{Event, Phase, Playback};
use crate::url::Url;
use crate::verify::Check;
use crate::viewer::{End, Heartbeat, Sample, Viewer};

/// Content-steering re-poll interval after a failed poll.
const POLL_RETRY: Duration = Duration::from_secs(10);

/// Most samples a heartbeat carries (steering's limit); older ones are
/// dropped first if a play could not report for long.
const MAX_SAMPLES: usize = 120;

/// Why a step of a play did not happen.
enum Step {
    /// The play's time was up during the request.
    Stopped,
    /// The appliance failed (a message for the report): fail over.
    Pathway(String),
    /// The play cannot go on.
    Fatal(&'static str, String),
}

/// One play, from the multivariant playlist to the end.
pub struct Play<'v> {
    v: &'v mut Viewer,
    play_id: String,
    master: Multivariant,
    steering: Option<Url>,
    priority: Vec<String>,
    next_poll: Option<Instant>,
    pressed: Instant,
    stop: Instant,
    /// Pathways that failed during this play.
    failed: Vec<String>,
    pathway: String,
    /// Index into the pathway's ladder (ascending bandwidth).
    variant: usize,
    media: HashMap<Url, Arc<Media>>,
    /// The initialisation section last fetched (refetched on any change).
    init: Option<Url>,
    next: usize,
    segments: usize,
    /// Where in the title playback started (a bookmark).
    offset: Duration,
    playback: Option<Playback>,
    throughput: Throughput,
    /// When the play next reports its progress (heartbeat or bookmark).
    next_report: Instant,
    /// Segments fetched since the last heartbeat.
    samples: Vec<Sample>,
    /// The play's licence URL, for protected titles.
    pub licence_url: Option<Url>,
    /// Key IDs already licensed in this play.
    licensed: Vec<[u8; 16]>,
}

impl<'v> Play<'v> {
    pub fn new(
        v: &'v mut Viewer,
        play_id: String,
        master: Multivariant,
        steering: Option<Url>,
        pressed: Instant,
        stop: Instant,
    ) -> Play<'v> {
        let next_report = pressed + v.setup.report_every;
        Play {
            v,
            play_id,
            master,
            steering,
            priority: Vec::new(),
            next_poll: None,
            pressed,
            stop,
            failed: Vec::new(),
            pathway: String::new(),
            variant: 0,
            media: HashMap::new(),
            init: None,
            next: 0,
            segments: 0,
            offset: Duration::ZERO,
            playback: None,
            throughput: Throughput::default(),
            next_report,
            samples: Vec::new(),
            licence_url: None,
            licensed: Vec::new(),
        }
    }

    pub async fn run(&mut self, resume: Option<f64>) -> End {
        if self.steering.is_some() && self.poll().await.is_err() {
            return self.stopped();
        }
        self.pathway = self.pick().unwrap_or_default().to_owned();
        // The first media playlist sets the segment count and the start.
        let media = loop {
            match self.media().await {
                Ok(m) => break m,
                Err(Step::Stopped) => return self.stopped(),
                Err(Step::Fatal(k, m)) => return End::Failed(k, m),
                Err(Step::Pathway(why)) => {
                    if let Err(end) = self.fail_over(why).await {
                        return end;
                    }
                }
            }
        };
        let startup = self
            .v
            .setup
            .startup
            .unwrap_or_else(|| media.segments.iter().take(2).map(|s| s.duration).sum());
        let resume = resume
            .and_then(|r| Duration::try_from_secs_f64(r).ok())
            .unwrap_or_default();
        let (first, offset) = media.seek(resume);
        // Resume only where there is enough left to start; else from the top.
        if first > 0 && first < media.segments.len() && media.total() - offset >= startup {
            (self.next, self.offset) = (first, offset);
            self.v.stats.resumed += 1;
        }
        self.segments = media.segments.len();
        let now = Instant::now();
        let total = media.total().saturating_sub(self.offset);
        self.playback = Some(Playback::new(
            self.pressed.into_std(),
            now.into_std(),
            total,
            startup,
            self.v.setup.max_buffer,
        ));
        self.run_loop().await
    }

    async fn run_loop(&mut self) -> End {
        loop {
            let now = Instant::now();
            let (phase, room, change) = {
                let pb = self.playback.as_mut().expect("set before the loop");
                let event = pb.advance(now.into_std());
                let r = (
                    pb.phase(),
                    pb.room_at(self.v.setup.max_buffer),
                    pb.next_change(),
                );
                self.observe(event);
                r
            };
            if phase == Phase::Ended {
                return End::Completed;
            }
            if now >= self.stop {
                return self.stopped();
            }
            if now >= self.next_report {
                self.next_report = now + self.v.setup.report_every;
                self.report(phase, now).await;
                continue;
            }
            if self.next_poll.is_some_and(|t| now >= t) {
                if self.poll().await.is_err() {
                    continue;
                }
                if let Some(p) = self.pick()
                    && p != self.pathway
                {
                    self.switch_to(p.to_owned());
                    self.v.stats.steered += 1;
                }
                continue;
            }
            let mut wake = self.stop.min(self.next_report);
            if let Some(t) = self.next_poll {
                wake = wake.min(t);
            }
            if self.next < self.segments {
                match room {
                    None => {
                        match self.fetch_segment().await {
                            Ok(()) | Err(Step::Stopped) => {}
                            Err(Step::Fatal(k, m)) => return End::Failed(k, m),
                            Err(Step::Pathway(why)) => {
                                if let Err(end) = self.fail_over(why).await {
                                    return end;
                                }
                            }
                        }
                        continue;
                    }
                    Some(t) => wake = wake.min(Instant::from_std(t)),
                }
            } else if let Some(t) = change {
                wake = wake.min(Instant::from_std(t));
            }
            sleep_until(wake).await;
        }
    }

    /// Chooses the variant, then fetches what the next segment needs.
    async fn fetch_segment(&mut self) -> Result<(), Step> {
        let current = self.media().await?;
        let Some(upcoming) = current.segments.get(self.next) else {
            return Err(Step::Fatal(
                "missing_segment",
                format!("segment {}", self.next),
            ));
        };
        let ladder: Vec<u64> = self.ladder().iter().map(|v| v.bandwidth).collect();
        let pb = self.playback.as_ref().expect("set before the loop");
        let choice = abr::choose(
            &ladder,
            self.throughput.estimate(),
            pb.buffer(),
            upcoming.duration,
        );
        if choice != self.variant {
            self.variant = choice;
            self.v.stats.switches += 1;
        }
        let media = self.media().await?;
        let Some(seg) = media.segments.get(self.next) else {
            return Err(Step::Fatal(
                "missing_segment",
                format!("variant {} has no segment {}", self.variant, self.next),
            ));
        };
        if seg.init != self.init {
            if let Some(init) = &seg.init {
                self.get(init, false, "init").await?;
            }
            self.init = seg.init.clone();
        }
        let t0 = Instant::now();
        let got = self.get(&seg.url, false, "segment").await;
        let now = Instant::now();
        // Every segment's download is reported, failed ones too: they are
        // what steering learns each path from.
        match &got {
            Ok(r) => self.sample(r.len, r.ttfb, now - t0, false),
            Err(Step::Pathway(_)) => self.sample(0, now - t0, now - t0, true),
            Err(_) => {}
        }
        let reply = got?;
        self.throughput.record(reply.len, now - t0);
        let bandwidth = ladder.get(self.variant).copied().unwrap_or_default();
        self.v.stats.segment(bandwidth, seg.duration);
        let pb = self.playback.as_mut().expect("set before the loop");
        let events = pb.add(now.into_std(), seg.duration);
        for e in events {
            self.observe(Some(e));
        }
        self.next += 1;
        Ok(())
    }

    /// Files a segment download for the next heartbeat.
    fn sample(&mut self, bytes: u64, ttfb: Duration, download: Duration, error: bool) {
        if !self.v.setup.heartbeats || self.pathway.is_empty() {
            return;
        }
        if self.samples.len() >= MAX_SAMPLES {
            self.samples.remove(0);
        }
        let ms = |d: Duration| d.as_secs_f64() * 1000.0;
        self.samples.push(Sample {
            pathway: self.pathway.clone(),
            bytes,
            ttfb_ms: ms(ttfb.min(download)),
            download_ms: ms(download),
            error,
        });
    }

    /// Reports progress: a heartbeat with the samples since the last, or a
    /// bookmark.
    async fn report(&mut self, phase: Phase, now: Instant) {
        let deadline = (now + self.v.setup.timeout).min(self.stop);
        let position = self.position();
        if !self.v.setup.heartbeats {
            let ok = self.v.bookmark(&self.play_id, position, deadline).await;
            self.v.stats.bookmarks.count(ok);
            return;
        }
        let state = match phase {
            Phase::Starting | Phase::Stalled => "buffering",
            Phase::Playing => "playing",
            Phase::Ended => "ended",
        };
        let beat = Heartbeat {
            position: Some(position),
            state,
            samples: std::mem::take(&mut self.samples),
        };
        // Samples of a heartbeat that failed are lost: they are
        // measurements, and resending a batch steering refused would fail again.
        let ok = self.v.heartbeat(&self.play_id, &beat, deadline).await;
        self.v.stats.heartbeats.count(ok);
    }

    /// The samples not yet reported, for the play's last heartbeat.
    pub fn take_samples(&mut self) -> Vec<Sample> {
        std::mem::take(&mut self.samples)
    }

    fn ladder(&self) -> &[hls::Variant] {
        self.master.ladder(&self.pathway).unwrap_or_default()
    }

    /// The current variant's media playlist on the current pathway.
    async fn media(&mut self) -> Result<Arc<Media>, Step> {
        let ladder = self.ladder();
        let Some(variant) = ladder.get(self.variant.min(ladder.len().saturating_sub(1))) else {
            return Err(Step::Fatal(
                "bad_master",
                format!("no variants on {}", self.pathway),
            ));
        };
        let url = variant.url.clone();
        if let Some(m) = self.media.get(&url) {
            return Ok(m.clone());
        }
        let reply = self.get(&url, true, "media playlist").await?;
        let media = hls::parse_media(&reply.body, &url)
            .map_err(|e| Step::Pathway(format!("media playlist {url}: {e:#}")))?;
        // Protected segments: a licence first, as a browser's CDM needs one
        // before it shows a frame; without it the play cannot go on.
        let wanted: Vec<[u8; 16]> = media
            .clear_key_ids
            .iter()
            .filter(|k| !self.licensed.contains(k))
            .copied()
            .collect();
        if !wanted.is_empty() {
            let Some(licence) = self.licence_url.clone() else {
                return Err(Step::Fatal(
                    "licence",
                    "protected segments and no licence URL".into(),
                ));
            };
            let deadline = (Instant::now() + self.v.setup.timeout).min(self.stop);
            let ok = self.v.licence(&licence, &wanted, deadline).await;
            self.v.stats.licences.count(ok);
            if !ok {
                return Err(Step::Fatal(
                    "licence",
                    format!("no licence from {}", licence.path),
                ));
            }
            self.licensed.extend(wanted);
        }
        let media = Arc::new(media);
        self.media.insert(url, media.clone());
        Ok(media)
    }

    /// GET from the current pathway's appliance, counting its bytes.
    /// With `--verify`, init and media segments are kept and checked; wrong
    /// bytes fail over like an error status.
    async fn get(&mut self, url: &Url, keep: bool, what: &str) -> Result<Reply, Step> {
        let deadline = (Instant::now() + self.v.setup.timeout).min(self.stop);
        let verify = self.v.setup.verify.clone().filter(|_| !keep);
        let keep = keep || verify.is_some();
        match self.v.agent.fetch(&Request::get(url, keep), deadline).await {
            Ok(r) => {
                self.v.stats.appliance_bytes(&self.pathway, r.len);
                Live::bump(&self.v.live.bytes, r.len);
                if !r.ok() {
                    return Err(Step::Pathway(format!("{what} {url}: status {}", r.status)));
                }
                if let Some(packaged) = verify {
                    let (check, key) = packaged.check(&url.path, &r.body);
                    if check != Check::Unknown {
                        self.v.stats.checked(key, check == Check::Right);
                    }
                    if check == Check::Wrong {
                        return Err(Step::Pathway(format!("{what} {url}: wrong bytes")));
                    }
                }
                Ok(r)
            }
            Err(FetchError::Timeout) if Instant::now() >= self.stop => Err(Step::Stopped),
            Err(e) => Err(Step::Pathway(format!("{what} {url}: {}", e.label()))),
        }
    }

    /// Polls content steering; `Err` only if the play's time ran out.
    async fn poll(&mut self) -> Result<(), ()> {
        let Some(base) = &self.steering else {
            return Ok(());
        };
        let url = if self.pathway.is_empty() {
            base.clone()
        } else {
            base.with_param("_HLS_pathway", &self.pathway)
        };
        let now = Instant::now();
        let deadline = (now + self.v.setup.timeout).min(self.stop);
        let result = self
            .v
            .ask_steering(&Request::get(&url, true), deadline)
            .await;
        let answer = match result {
            Err(FetchError::Timeout) if Instant::now() >= self.stop => return Err(()),
            Err(e) => Err(e.label().to_owned()),
            Ok(r) if !r.ok() => Err(format!("status {}", r.status)),
            Ok(r) => hls::parse_steering(&r.body, &url).map_err(|e| format!("{e:#}")),
        };
        self.v.stats.steering_polls.count(answer.is_ok());
        match answer {
            Ok(s) => {
                self.priority = s.priority;
                if let Some(reload) = s.reload {
                    self.steering = Some(reload);
                }
                self.next_poll = Some(now + s.ttl);
            }
            Err(why) => {
                let samples = &mut self.v.stats.samples;
                samples
                    .entry("steering_poll".to_owned())
                    .or_insert_with(|| format!("{url}: {why}"));
                self.next_poll = Some(now + POLL_RETRY);
            }
        }
        Ok(())
    }

    fn pick(&self) -> Option<&str> {
        hls::pick_pathway(
            self.master.pathway_ids(),
            &self.priority,
            self.master.primary.as_deref(),
            &self.failed,
        )
    }

    /// The current pathway failed: ask steering again, then take the next
    /// pathway, keeping the variant. `Err` when none is left.
    async fn fail_over(&mut self, why: String) -> Result<(), End> {
        self.failed.push(std::mem::take(&mut self.pathway));
        if self.poll().await.is_err() {
            return Err(self.stopped());
        }
        let Some(next) = self.pick() else {
            return Err(End::Failed("all_pathways_failed", why));
        };
        self.switch_to(next.to_owned());
        self.v.stats.failovers += 1;
        Live::bump(&self.v.live.failovers, 1);
        Ok(())
    }

    /// Moves to another pathway with the same variant (steering lists the
    /// same ladder on each; clamped in case one is shorter).
    fn switch_to(&mut self, pathway: String) {
        self.pathway = pathway;
        self.variant = self.variant.min(self.ladder().len().saturating_sub(1));
    }

    /// How a play that reached its stop time ended: cut by the end of the
    /// run, or watched for as long as `--watch` says.
    fn stopped(&self) -> End {
        if self.stop >= self.v.setup.end {
            End::Cut
        } else {
            End::Completed
        }
    }

    fn observe(&mut self, event: Option<Event>) {
        match event {
            Some(Event::Started { startup }) => {
                self.v.stats.started_playback(startup);
                Live::bump(&self.v.live.playing, 1);
            }
            Some(Event::Stalled) => Live::bump(&self.v.live.rebuffers, 1),
            Some(Event::Resumed { .. } | Event::Ended) | None => {}
        }
    }

    fn position(&self) -> f64 {
        let played = self
            .playback
            .as_ref()
            .map_or(Duration::ZERO, Playback::position);
        (self.offset + played).as_secs_f64()
    }

    /// Stops playback now, records what the viewer saw, and returns the
    /// position to bookmark.
    pub fn finish(&mut self) -> Option<f64> {
        let pb = self.playback.as_mut()?;
        let event = pb.finish(Instant::now().into_std());
        let started = pb.startup().is_some();
        let (played, stalled, rebuffers) = (pb.played(), pb.stalled(), pb.rebuffers());
        self.observe(event);
        let s = &mut self.v.stats;
        s.played += played;
        s.stalled += stalled;
        s.rebuffers += u64::from(rebuffers);
        if started {
            self.v
                .live
                .playing
                .fetch_sub(1, std::sync::atomic::Ordering::Relaxed);
        }
        Some(self.position())
    }
}
