//! Control-loop transitions with made-up instants: registration, heartbeats
//! in full and as deltas, resyncs, key refreshes, backoff, and the control
//! plane going away and coming back.

use std::collections::BTreeSet;

use super::*;

fn t0() -> Instant {
    Instant::now()
}

fn secs(n: u64) -> Duration {
    Duration::from_secs(n)
}

fn state(keys_version: Option<u64>, now: Instant) -> ControlState {
    ControlState::new(
        Settings {
            keys_from_control: true,
            keys_version,
            seed: 7,
        },
        now,
    )
}

fn held(name: &str, objects: u64) -> RenditionHolding {
    RenditionHolding {
        rendition: name.into(),
        objects,
        bytes: objects * 100,
    }
}

fn observed(renditions: &[RenditionHolding]) -> Observed {
    Observed {
        renditions: renditions.to_vec(),
        prefixes: None,
        health: HealthSummary {
            status: "ok".into(),
            egress_bps: 0,
            capacity_bps: 1,
            connections: 0,
        },
    }
}

fn registered(interval_ms: u64) -> RegisterResponse {
    RegisterResponse {
        heartbeat_interval_ms: interval_ms,
        inventory_version: 0,
        inventory_digest: String::new(),
        keys_version: 1,
    }
}

fn answer(inventory_version: u64, keys_version: u64) -> HeartbeatResponse {
    HeartbeatResponse {
        resync: false,
        inventory_version,
        keys_version,
        prefixes_version: 0,
        prefixes_resync: false,
        register: false,
    }
}

/// Registers with a 1 s interval and acknowledges a first full heartbeat of
/// `holding` as inventory version 1, keys at version 1.
fn running(holding: &[RenditionHolding], now: Instant) -> ControlState {
    let mut s = state(Some(1), now);
    assert_eq!(s.poll(now), Action::Register);
    s.on_response(
        Event::Registered {
            response: registered(1000),
            holding: holding.to_vec(),
        },
        now,
    );
    assert_eq!(s.poll(now), Action::Heartbeat { full: true });
    s.heartbeat(observed(holding), now);
    s.on_response(Event::HeartbeatAnswered(answer(1, 1)), now);
    s
}

#[test]
fn registers_first_then_heartbeats_at_steerings_interval() {
    let now = t0();
    let mut s = state(None, now);
    assert!(!s.registered());
    assert_eq!(s.poll(now), Action::Register);
    s.on_response(
        Event::Registered {
            response: registered(250),
            holding: vec![],
        },
        now,
    );
    assert!(s.registered());
    assert_eq!(s.interval(), Duration::from_millis(250));
    // The first heartbeat goes at once, with the whole inventory.
    assert_eq!(s.poll(now), Action::Heartbeat { full: true });
    let hb = s.heartbeat(observed(&[held("t/a", 2)]), now);
    assert_eq!(
        hb.inventory,
        Some(Inventory::Full {
            version: 1,
            digest: inventory_digest(&[held("t/a", 2)]),
            renditions: vec![held("t/a", 2)],
        })
    );
    s.on_response(Event::HeartbeatAnswered(answer(1, 0)), now);
    let next = now + Duration::from_millis(250);
    assert_eq!(s.poll(now), Action::FetchKeys, "keys version 0 is not ours");
    s.on_response(Event::KeysInstalled(0), now);
    assert_eq!(s.poll(now), Action::Sleep(next));
    assert_eq!(s.poll(next), Action::Heartbeat { full: false });
}

#[test]
fn steerings_interval_is_clamped() {
    let now = t0();
    for (ms, want) in [(0, 100), (5_000, 5_000), (u64::MAX, 600_000)] {
        let mut s = state(None, now);
        s.on_response(
            Event::Registered {
                response: registered(ms),
                holding: vec![],
            },
            now,
        );
        assert_eq!(s.interval(), Duration::from_millis(want), "{ms}");
    }
}

#[test]
fn heartbeats_carry_deltas_then_nothing_when_nothing_changed() {
    let now = t0();
    let mut s = running(&[held("t/a", 2), held("t/b", 3)], now);
    let later = now + secs(1);
    assert_eq!(s.poll(later), Action::Heartbeat { full: false });
    let hb = s.heartbeat(observed(&[held("t/a", 2), held("t/c", 1)]), later);
    let now_holding = [held("t/a", 2), held("t/c", 1)];
    assert_eq!(
        hb.inventory,
        Some(Inventory::Delta {
            base_version: 1,
            version: 2,
            digest: inventory_digest(&now_holding),
            upserted: vec![held("t/c", 1)],
            removed: vec!["t/b".into()],
        })
    );
    s.on_response(Event::HeartbeatAnswered(answer(2, 1)), later);
    let later = later + secs(1);
    let hb = s.heartbeat(observed(&now_holding), later);
    assert_eq!(hb.inventory, None, "nothing changed since version 2");
    s.on_response(Event::HeartbeatAnswered(answer(2, 1)), later);
    // The next delta builds on version 2.
    let hb = s.heartbeat(observed(&[held("t/a", 2)]), later + secs(1));
    assert!(matches!(
        hb.inventory,
        Some(Inventory::Delta {
            base_version: 2,
            version: 3,
            ..
        })
    ));
}

#[test]
fn a_resync_request_makes_the_next_heartbeat_full() {
    let now = t0();
    let holding = [held("t/a", 2)];
    let mut s = running(&holding, now);
    let later = now + secs(1);
    s.heartbeat(observed(&[held("t/a", 2), held("t/b", 1)]), later);
    s.on_response(
        Event::HeartbeatAnswered(HeartbeatResponse {
            resync: true,
            ..answer(7, 1)
        }),
        later,
    );
    let later = later + secs(1);
    assert_eq!(s.poll(later), Action::Heartbeat { full: true });
    let hb = s.heartbeat(observed(&holding), later);
    // Still built on the last acknowledged version, whole this time.
    assert!(matches!(
        hb.inventory,
        Some(Inventory::Full { version: 2, ref renditions, .. }) if renditions == &holding
    ));
    s.on_response(Event::HeartbeatAnswered(answer(2, 1)), later);
    assert_eq!(s.poll(later + secs(1)), Action::Heartbeat { full: false });
}

#[test]
fn registration_skips_the_full_report_when_steering_already_holds_it() {
    let now = t0();
    let holding = vec![held("t/a", 2)];
    let mut s = state(Some(1), now);
    s.on_response(
        Event::Registered {
            response: RegisterResponse {
                inventory_version: 9,
                inventory_digest: inventory_digest(&holding),
                ..registered(1000)
            },
            holding: holding.clone(),
        },
        now,
    );
    assert_eq!(s.poll(now), Action::Heartbeat { full: false });
    assert_eq!(s.heartbeat(observed(&holding), now).inventory, None);
    // A digest that differs (or version 0) leaves the full report due.
    let mut s = state(Some(1), now);
    s.on_response(
        Event::Registered {
            response: RegisterResponse {
                inventory_version: 9,
                inventory_digest: "other".into(),
                ..registered(1000)
            },
            holding,
        },
        now,
    );
    assert_eq!(s.poll(now), Action::Heartbeat { full: true });
}

#[test]
fn keys_are_fetched_when_the_announced_version_changes() {
    let now = t0();
    let mut s = running(&[], now);
    let later = now + secs(1);
    assert!(matches!(s.poll(later), Action::Heartbeat { .. }));
    s.heartbeat(observed(&[]), later);
    s.on_response(Event::HeartbeatAnswered(answer(1, 2)), later);
    assert_eq!(s.poll(later), Action::FetchKeys);
    // A failed fetch keeps the current keys and is tried again after the next
    // answer that still announces version 2.
    s.on_response(Event::KeysFailed, later);
    assert_eq!(s.keys_version(), Some(1));
    assert_eq!(s.poll(later), Action::Sleep(later + secs(1)));
    let later = later + secs(1);
    s.heartbeat(observed(&[]), later);
    s.on_response(Event::HeartbeatAnswered(answer(1, 2)), later);
    assert_eq!(s.poll(later), Action::FetchKeys);
    s.on_response(Event::KeysInstalled(2), later);
    assert_eq!(s.keys_version(), Some(2));
    // Same version announced again: nothing to fetch.
    let later = later + secs(1);
    s.heartbeat(observed(&[]), later);
    s.on_response(Event::HeartbeatAnswered(answer(1, 2)), later);
    assert_eq!(s.poll(later), Action::Sleep(later + secs(1)));
}

#[test]
fn keys_from_a_file_are_never_fetched() {
    let now = t0();
    let mut s = ControlState::new(
        Settings {
            keys_from_control: false,
            keys_version: None,
            seed: 1,
        },
        now,
    );
    s.on_response(
        Event::Registered {
            response: registered(1000),
            holding: vec![],
        },
        now,
    );
    s.heartbeat(observed(&[]), now);
    s.on_response(Event::HeartbeatAnswered(answer(1, 5)), now);
    assert_eq!(s.poll(now), Action::Sleep(now + secs(1)));
}

/// The waits after `n` consecutive failed registrations, from `now`.
fn failed_waits(s: &mut ControlState, mut now: Instant, n: usize) -> Vec<Duration> {
    let mut waits = Vec::new();
    for _ in 0..n {
        assert_eq!(s.poll(now), Action::Register);
        s.on_response(Event::RegisterFailed, now);
        let Action::Sleep(until) = s.poll(now) else {
            panic!("expected a sleep after a failure");
        };
        waits.push(until - now);
        now = until;
    }
    waits
}

#[test]
fn failures_back_off_with_jitter_up_to_a_cap_and_success_resets() {
    let now = t0();
    let mut s = state(None, now);
    let waits = failed_waits(&mut s, now, 12);
    // Never sooner than a normal beat; the spread doubles from one interval
    // to four (5 s before steering said otherwise); at most 25 s in all.
    for (i, w) in waits.iter().enumerate() {
        let spread = FIRST_INTERVAL * (1u32 << i.min(2));
        assert!(
            *w >= FIRST_INTERVAL && *w < FIRST_INTERVAL + spread,
            "wait {i} is {w:?}"
        );
    }
    // Jittered: the waits at the cap are not all the same.
    let capped: BTreeSet<Duration> = waits[3..].iter().copied().collect();
    assert!(capped.len() > 1, "{waits:?}");
    // Two appliances with other seeds do not retry in lockstep.
    let mut other = ControlState::new(
        Settings {
            keys_from_control: true,
            keys_version: None,
            seed: 8,
        },
        now,
    );
    assert_ne!(failed_waits(&mut other, now, 12), waits);
    // Success: the normal interval again, and the count starts over.
    let later = now + secs(3600);
    s.on_response(
        Event::Registered {
            response: registered(1000),
            holding: vec![],
        },
        later,
    );
    s.heartbeat(observed(&[]), later);
    s.on_response(Event::HeartbeatFailed, later);
    let Action::Sleep(until) = s.poll(later) else {
        panic!("expected a sleep");
    };
    assert!(until - later >= secs(1) && until - later < secs(2));
}

#[test]
fn the_cap_is_thirty_seconds_for_long_intervals() {
    let now = t0();
    let mut s = state(None, now);
    s.on_response(
        Event::Registered {
            response: registered(20_000),
            holding: vec![],
        },
        now,
    );
    let mut at = now;
    for _ in 0..10 {
        s.heartbeat(observed(&[]), at);
        s.on_response(Event::HeartbeatFailed, at);
        let Action::Sleep(until) = s.poll(at) else {
            panic!("expected a sleep");
        };
        assert!(
            until - at >= secs(20) && until - at < secs(50),
            "{:?}",
            until - at
        );
        at = until;
    }
}

#[test]
fn control_plane_gone_and_back_keeps_keys_and_reregisters_when_told() {
    let now = t0();
    let holding = [held("t/a", 2)];
    let mut s = running(&holding, now);
    // Gone: heartbeats fail for a while. Nothing but heartbeats and sleeps
    // comes out, and the installed keys stay as they are.
    let mut at = now + secs(1);
    for _ in 0..20 {
        match s.poll(at) {
            Action::Heartbeat { full } => {
                assert!(!full);
                s.heartbeat(observed(&holding), at);
                s.on_response(Event::HeartbeatFailed, at);
            }
            Action::Sleep(until) => at = until,
            other => panic!("unexpected {other:?} while the control plane is gone"),
        }
        assert_eq!(s.keys_version(), Some(1));
    }
    assert!(s.registered());
    // Back, restarted: it answers and asks to hear who we are again.
    let at = match s.poll(at) {
        Action::Sleep(until) => until,
        _ => at,
    };
    assert_eq!(s.poll(at), Action::Heartbeat { full: false });
    s.heartbeat(observed(&holding), at);
    s.on_response(
        Event::HeartbeatAnswered(HeartbeatResponse {
            register: true,
            ..answer(1, 1)
        }),
        at,
    );
    assert!(!s.registered());
    assert_eq!(s.poll(at), Action::Sleep(at + secs(1)));
    assert_eq!(s.poll(at + secs(1)), Action::Register);
    assert_eq!(s.keys_version(), Some(1));
}

#[test]
fn an_unknown_appliance_registers_again_and_unknown_renditions_are_left_out() {
    let now = t0();
    let mut s = running(&[held("t/a", 1)], now);
    let at = now + secs(1);
    let hb = s.heartbeat(observed(&[held("t/a", 1), held("t/dash", 4)]), at);
    assert!(hb.inventory.is_some());
    s.on_response(Event::NotInCatalog(vec!["t/dash".into()]), at);
    let at = at + secs(1);
    assert_eq!(s.poll(at), Action::Heartbeat { full: false });
    let hb = s.heartbeat(observed(&[held("t/a", 1), held("t/dash", 4)]), at);
    assert_eq!(hb.inventory, None, "t/dash is left out, t/a unchanged");
    // Asked about again after the catalog had time to learn it.
    s.on_response(Event::HeartbeatAnswered(answer(1, 1)), at);
    let at = at + NOT_IN_CATALOG_TTL + secs(1);
    let hb = s.heartbeat(observed(&[held("t/a", 1), held("t/dash", 4)]), at);
    assert!(
        matches!(hb.inventory, Some(Inventory::Delta { ref upserted, .. }) if upserted == &[held("t/dash", 4)])
    );
    s.on_response(Event::UnknownAppliance, at);
    assert!(!s.registered());
    assert_eq!(s.poll(at + secs(1)), Action::Register);
}

#[test]
fn prefixes_are_reported_full_then_as_deltas_and_resynced_on_request() {
    let set = |v: &[&str]| {
        v.iter()
            .map(|p| (p.parse::<IpNet>().unwrap(), RouteAttrs::default()))
            .collect::<Routes>()
    };
    let now = t0();
    let mut s = running(&[], now);
    let with = |p: &Routes| Observed {
        prefixes: Some(p.clone()),
        ..observed(&[])
    };
    let (a, b) = (
        set(&["10.0.0.0/8", "2001:db8::/32"]),
        set(&["10.0.0.0/8", "100.64.0.0/10"]),
    );
    let hb = s.heartbeat(with(&a), now);
    assert_eq!(
        hb.prefixes,
        Some(PrefixReport::Full {
            version: 1,
            prefixes: vec!["10.0.0.0/8".into(), "2001:db8::/32".into()],
            attrs: BTreeMap::new(),
        })
    );
    s.on_response(
        Event::HeartbeatAnswered(HeartbeatResponse {
            prefixes_version: 1,
            ..answer(1, 1)
        }),
        now,
    );
    let hb = s.heartbeat(with(&b), now);
    assert_eq!(
        hb.prefixes,
        Some(PrefixReport::Delta {
            base_version: 1,
            version: 2,
            announced: vec!["100.64.0.0/10".into()],
            withdrawn: vec!["2001:db8::/32".into()],
            attrs: BTreeMap::new(),
        })
    );
    s.on_response(
        Event::HeartbeatAnswered(HeartbeatResponse {
            prefixes_resync: true,
            ..answer(1, 1)
        }),
        now,
    );
    assert!(matches!(
        s.heartbeat(with(&b), now).prefixes,
        Some(PrefixReport::Full { version: 2, .. })
    ));
    s.on_response(
        Event::HeartbeatAnswered(HeartbeatResponse {
            prefixes_version: 2,
            ..answer(1, 1)
        }),
        now,
    );
    assert_eq!(s.heartbeat(with(&b), now).prefixes, None);
    // The router marks a prefix a fallback: it is announced again with its
    // attributes; the others are not repeated.
    let mut marked = b.clone();
    let fallback = RouteAttrs {
        communities: vec!["64500:100".into()],
        med: Some(20),
    };
    marked.insert("10.0.0.0/8".parse().unwrap(), fallback.clone());
    assert_eq!(
        s.heartbeat(with(&marked), now).prefixes,
        Some(PrefixReport::Delta {
            base_version: 2,
            version: 3,
            announced: vec!["10.0.0.0/8".into()],
            withdrawn: vec![],
            attrs: [("10.0.0.0/8".to_owned(), fallback)].into(),
        })
    );
    // Without BGP there is never a prefix report.
    assert_eq!(s.heartbeat(observed(&[]), now).prefixes, None);
}

#[test]
fn a_failed_heartbeat_acknowledges_nothing() {
    let now = t0();
    let mut s = running(&[held("t/a", 1)], now);
    let changed = [held("t/a", 1), held("t/b", 1)];
    s.heartbeat(observed(&changed), now);
    s.on_response(Event::HeartbeatFailed, now);
    let hb = s.heartbeat(observed(&changed), now);
    assert!(matches!(
        hb.inventory,
        Some(Inventory::Delta { base_version: 1, ref upserted, .. }) if upserted == &[held("t/b", 1)]
    ));
}

#[test]
fn delta_lists_changes_only() {
    let acked: BTreeMap<String, RenditionHolding> = [held("a", 1), held("b", 2), held("c", 3)]
        .into_iter()
        .map(|h| (h.rendition.clone(), h))
        .collect();
    let (up, rm) = delta(&acked, &[held("a", 1), held("b", 5), held("d", 1)]);
    assert_eq!(up, vec![held("b", 5), held("d", 1)]);
    assert_eq!(rm, vec!["c".to_owned()]);
    let (up, rm) = delta(&acked, &[held("a", 1), held("b", 2), held("c", 3)]);
    assert!(up.is_empty() && rm.is_empty());
}

#[test]
fn draining_makes_the_next_heartbeat_due_at_once() {
    let now = t0();
    let mut s = running(&[held("t/a", 2)], now);
    let later = now + Duration::from_millis(300);
    assert_eq!(s.poll(later), Action::Sleep(now + secs(1)));
    s.report_now(later);
    assert_eq!(s.poll(later), Action::Heartbeat { full: false });
    // Never later than it already was.
    let mut backing_off = running(&[], now);
    backing_off.report_now(now + secs(5));
    assert_eq!(backing_off.poll(now), Action::Sleep(now + secs(1)));
}
