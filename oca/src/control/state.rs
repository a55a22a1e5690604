//! The appliance's side of the control-plane conversation as a pure state
//! machine: what to send next and when, given what steering answered.
//! `poll(now)` says what to do (register, heartbeat, fetch keys, or sleep
//! until a deadline), the caller does it and hands the outcome to
//! `on_response(event, now)`. No IO and no clock here, so every transition is
//! tested with made-up instants (see `state_tests.rs`).
//!
//! Serving never depends on this conversation: keys already installed stay
//! installed whatever steering does, so an appliance that lost the control
//! plane goes on serving with what it has.

use std::collections::{BTreeMap, HashSet};
use std::time::{Duration, Instant};

use control_client::RetryPolicy;
use control_client::wire::{
    HealthSummary, Heartbeat, HeartbeatResponse, Inventory, PrefixReport, RegisterResponse,
    RenditionHolding, RouteAttrs, inventory_digest,
};
use ipnet::IpNet;
use rand::rngs::SmallRng;
use rand::{RngExt, SeedableRng};

/// Heartbeat interval until steering says otherwise (at registration).
pub const FIRST_INTERVAL: Duration = Duration::from_secs(5);
/// Renditions steering refused as not in its catalog are asked about again
/// after this long (the catalog may have learned them since).
pub const NOT_IN_CATALOG_TTL: Duration = Duration::from_secs(600);
/// After failures the wait grows to at most this many heartbeat intervals…
const BACKOFF_SPREAD: u32 = 4;
/// …and never past this, so a returning control plane hears from everyone soon.
const MAX_BACKOFF: Duration = Duration::from_secs(30);

/// What the state machine starts from.
#[derive(Debug, Clone)]
pub struct Settings {
    /// Signing keys come from steering (not from a local key file), so key
    /// set changes are followed.
    pub keys_from_control: bool,
    /// Version of the keys already installed (from the disk cache), if any.
    pub keys_version: Option<u64>,
    /// Seed of the backoff jitter (random in the daemon, fixed in tests).
    pub seed: u64,
}

/// What the caller should do next.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Action {
    /// Send a registration; answer with `Registered` or `RegisterFailed`.
    Register,
    /// Build a heartbeat with [`ControlState::heartbeat`] and send it. `full`:
    /// it carries the whole inventory (first report, or steering asked),
    /// else only what changed since steering's acknowledgement.
    Heartbeat { full: bool },
    /// Fetch the key set and install it; answer `KeysInstalled` or `KeysFailed`.
    FetchKeys,
    /// Nothing to do before this instant.
    Sleep(Instant),
}

/// The outcome of the last action.
#[derive(Debug, Clone)]
pub enum Event {
    /// Steering accepted the registration. `holding` is the appliance's
    /// inventory as it is now, to compare with what steering already holds.
    Registered {
        response: RegisterResponse,
        holding: Vec<RenditionHolding>,
    },
    /// No answer, or a refusal: try again later.
    RegisterFailed,
    HeartbeatAnswered(HeartbeatResponse),
    /// Steering does not know this appliance (its registry was reset).
    UnknownAppliance,
    /// Steering refused these renditions as not in its catalog.
    NotInCatalog(Vec<String>),
    /// No answer, or another refusal.
    HeartbeatFailed,
    /// Key set of this version installed.
    KeysInstalled(u64),
    /// Keys not fetched or unusable: the current ones stay.
    KeysFailed,
}

/// What the appliance holds and knows when a heartbeat is built.
#[derive(Debug, Clone)]
pub struct Observed {
    pub renditions: Vec<RenditionHolding>,
    /// BGP-learned client prefixes with their communities and MED; `None`
    /// without BGP.
    pub prefixes: Option<Routes>,
    pub health: HealthSummary,
}

/// What the heartbeat in flight reported, acknowledged when it is answered.
#[derive(Debug, Clone, Default)]
struct Sent {
    renditions: Option<Vec<RenditionHolding>>,
    prefixes: Option<Routes>,
}

/// Learned prefixes and what the router attached to each.
pub type Routes = BTreeMap<IpNet, RouteAttrs>;

/// A report (inventory or prefixes) steering acknowledged up to `version`.
#[derive(Debug, Clone)]
struct Acked<T> {
    items: T,
    version: u64,
    /// Send everything next time (nothing acknowledged yet, or steering asked).
    full: bool,
}

impl<T: Default> Default for Acked<T> {
    fn default() -> Self {
        Acked {
            items: T::default(),
            version: 0,
            full: true,
        }
    }
}

#[derive(Debug)]
pub struct ControlState {
    keys_from_control: bool,
    keys_version: Option<u64>,
    interval: Duration,
    registered: bool,
    /// When the next registration (unregistered) or heartbeat is due.
    next: Instant,
    /// Consecutive attempts that got no useful answer.
    failures: u32,
    /// Steering announced a key set other than ours in its last answer.
    keys_due: bool,
    inventory: Acked<BTreeMap<String, RenditionHolding>>,
    prefixes: Acked<Routes>,
    sent: Option<Sent>,
    /// Directories steering's catalog does not know (manifests, other
    /// packagings): left out of reports until `not_in_catalog_since` is
    /// `NOT_IN_CATALOG_TTL` old.
    not_in_catalog: HashSet<String>,
    not_in_catalog_since: Instant,
    rng: SmallRng,
}

impl ControlState {
    /// Start unregistered, with the first registration due at once.
    pub fn new(settings: Settings, now: Instant) -> ControlState {
        ControlState {
            keys_from_control: settings.keys_from_control,
            keys_version: settings.keys_version,
            interval: FIRST_INTERVAL,
            registered: false,
            next: now,
            failures: 0,
            keys_due: false,
            inventory: Acked::default(),
            prefixes: Acked::default(),
            sent: None,
            not_in_catalog: HashSet::new(),
            not_in_catalog_since: now,
            rng: SmallRng::seed_from_u64(settings.seed),
        }
    }

    /// What to do at `now`. One action at a time: the caller reports its
    /// outcome with `on_response` before polling again.
    pub fn poll(&self, now: Instant) -> Action {
        if self.keys_due {
            return Action::FetchKeys;
        }
        if now < self.next {
            return Action::Sleep(self.next);
        }
        if !self.registered {
            return Action::Register;
        }
        Action::Heartbeat {
            full: self.inventory.full,
        }
    }

    /// Something steering should hear at once happened (draining began): the
    /// next heartbeat (or registration) is due now rather than at its time.
    pub fn report_now(&mut self, now: Instant) {
        self.next = self.next.min(now);
    }

    /// The heartbeat to send for `Action::Heartbeat`: health, the inventory
    /// (in full or as a delta, or none when nothing changed) and the learned
    /// prefixes likewise. What it reports is acknowledged when it is answered.
    pub fn heartbeat(&mut self, observed: Observed, now: Instant) -> Heartbeat {
        if now.saturating_duration_since(self.not_in_catalog_since) > NOT_IN_CATALOG_TTL {
            self.not_in_catalog.clear();
            self.not_in_catalog_since = now;
        }
        let mut holding = observed.renditions;
        holding.retain(|r| !self.not_in_catalog.contains(&r.rendition));
        let inv = &self.inventory;
        let digest = inventory_digest(&holding);
        let inventory = if inv.full {
            Some(Inventory::Full {
                version: inv.version + 1,
                digest,
                renditions: holding.clone(),
            })
        } else {
            let (upserted, removed) = delta(&inv.items, &holding);
            (!upserted.is_empty() || !removed.is_empty()).then(|| Inventory::Delta {
                base_version: inv.version,
                version: inv.version + 1,
                digest,
                upserted,
                removed,
            })
        };
        let p = &self.prefixes;
        let prefixes = observed
            .prefixes
            .as_ref()
            .and_then(|now| prefix_report(&p.items, p.version, now, p.full));
        self.sent = Some(Sent {
            renditions: inventory.is_some().then_some(holding),
            prefixes: observed.prefixes.filter(|_| prefixes.is_some()),
        });
        Heartbeat {
            health: observed.health,
            inventory,
            prefixes,
        }
    }

    /// Take in the outcome of the last action.
    pub fn on_response(&mut self, event: Event, now: Instant) {
        match event {
            Event::Registered { response, holding } => {
                self.answered();
                self.registered = true;
                self.interval =
                    Duration::from_millis(response.heartbeat_interval_ms.clamp(100, 600_000));
                // If steering already holds exactly what we hold, no full resync is needed.
                let holding: Vec<_> = holding
                    .into_iter()
                    .filter(|r| !self.not_in_catalog.contains(&r.rendition))
                    .collect();
                if response.inventory_version > 0
                    && response.inventory_digest == inventory_digest(&holding)
                {
                    self.inventory = Acked {
                        items: by_rendition(holding),
                        version: response.inventory_version,
                        full: false,
                    };
                }
                self.next = now;
            }
            Event::HeartbeatAnswered(resp) => {
                self.answered();
                let sent = self.sent.take().unwrap_or_default();
                if resp.prefixes_resync {
                    self.prefixes.full = true;
                } else if let Some(p) = sent.prefixes {
                    self.prefixes = Acked {
                        items: p,
                        version: resp.prefixes_version,
                        full: false,
                    };
                }
                if resp.resync {
                    self.inventory.full = true;
                } else if let Some(r) = sent.renditions {
                    self.inventory = Acked {
                        items: by_rendition(r),
                        version: resp.inventory_version,
                        full: false,
                    };
                }
                // Steering restarted and wants to hear again who we are
                // (addresses, capacity, storage) before the next beat.
                if resp.register {
                    self.registered = false;
                }
                self.keys_due =
                    self.keys_from_control && self.keys_version != Some(resp.keys_version);
                self.next = now + self.interval;
            }
            Event::UnknownAppliance => {
                self.answered();
                self.sent = None;
                self.registered = false;
                self.next = now + self.interval;
            }
            Event::NotInCatalog(renditions) => {
                self.answered();
                self.sent = None;
                self.not_in_catalog.extend(renditions);
                self.next = now + self.interval;
            }
            Event::RegisterFailed | Event::HeartbeatFailed => {
                self.sent = None;
                self.failures = self.failures.saturating_add(1);
                self.next = now + self.backoff();
            }
            Event::KeysInstalled(version) => {
                self.keys_version = Some(version);
                self.keys_due = false;
            }
            // Retried after the next answered heartbeat, if steering still
            // announces another version.
            Event::KeysFailed => self.keys_due = false,
        }
    }

    pub fn registered(&self) -> bool {
        self.registered
    }

    /// Version of the installed key set, if any.
    pub fn keys_version(&self) -> Option<u64> {
        self.keys_version
    }

    /// The heartbeat interval in force.
    pub fn interval(&self) -> Duration {
        self.interval
    }

    fn answered(&mut self) {
        self.failures = 0;
    }

    /// Wait after `failures` consecutive failures: the heartbeat interval,
    /// plus a jittered wait that doubles up to a cap ("full jitter"), so
    /// appliances that lost the control plane together do not return in
    /// lockstep, and never sooner than a normal beat.
    fn backoff(&mut self) -> Duration {
        let cap = (self.interval * BACKOFF_SPREAD)
            .min(MAX_BACKOFF)
            .max(self.interval);
        let policy = RetryPolicy {
            base: self.interval,
            max: cap,
            ..RetryPolicy::default()
        };
        self.interval + policy.backoff(self.failures, self.rng.random::<f64>())
    }
}

fn by_rendition(holding: Vec<RenditionHolding>) -> BTreeMap<String, RenditionHolding> {
    holding
        .into_iter()
        .map(|h| (h.rendition.clone(), h))
        .collect()
}

/// What changed between the inventory steering acknowledged and the current one.
pub fn delta(
    acked: &BTreeMap<String, RenditionHolding>,
    now: &[RenditionHolding],
) -> (Vec<RenditionHolding>, Vec<String>) {
    let upserted: Vec<RenditionHolding> = now
        .iter()
        .filter(|r| acked.get(&r.rendition) != Some(*r))
        .cloned()
        .collect();
    let current: HashSet<&str> = now.iter().map(|r| r.rendition.as_str()).collect();
    let removed = acked
        .keys()
        .filter(|k| !current.contains(k.as_str()))
        .cloned()
        .collect();
    (upserted, removed)
}

/// What to tell steering about BGP-learned prefixes: everything when `full`
/// (first report, or steering asked), else what changed since the acknowledged
/// set (a prefix whose attributes changed is announced again), or nothing when
/// nothing did.
pub fn prefix_report(
    acked: &Routes,
    acked_version: u64,
    now: &Routes,
    full: bool,
) -> Option<PrefixReport> {
    let attrs_of = |prefixes: &[String], routes: &Routes| {
        prefixes
            .iter()
            .zip(routes.iter())
            .filter(|(_, (_, a))| !a.is_empty())
            .map(|(p, (_, a))| (p.clone(), a.clone()))
            .collect::<BTreeMap<_, _>>()
    };
    if full {
        let prefixes: Vec<String> = now.keys().map(|p| p.to_string()).collect();
        return Some(PrefixReport::Full {
            version: acked_version + 1,
            attrs: attrs_of(&prefixes, now),
            prefixes,
        });
    }
    let changed: Routes = now
        .iter()
        .filter(|(p, a)| acked.get(p) != Some(a))
        .map(|(p, a)| (*p, a.clone()))
        .collect();
    let announced: Vec<String> = changed.keys().map(|p| p.to_string()).collect();
    let withdrawn: Vec<String> = acked
        .keys()
        .filter(|p| !now.contains_key(p))
        .map(|p| p.to_string())
        .collect();
    (!announced.is_empty() || !withdrawn.is_empty()).then(|| PrefixReport::Delta {
        base_version: acked_version,
        version: acked_version + 1,
        attrs: attrs_of(&announced, &changed),
        announced,
        withdrawn,
    })
}

#[cfg(test)]
#[path = "state_tests.rs"]
mod tests;
