//! `control_bodies`: JSON bodies of the control-plane API, deserialised into
//! control-client's wire types as steering and the appliances do, then, for
//! those that parse, handed to steering's pure bookkeeping on a fresh
//! registry (`Registry::take_inventory`, `take_prefixes`).
//!
//! Input: a JSON text. It is tried as every wire type (the server side is
//! steering's register and heartbeat handlers; the client side is what oca
//! and fill-agent read back); no type byte, so seeds are real bodies.
//!
//! Properties:
//! - deserialising never panics, and whatever parses re-serialises to JSON
//!   that parses back to the same value;
//! - a heartbeat that passes the handler's validation leaves the registry
//!   consistent: the stored digest is the digest of the stored inventory,
//!   the rendition index names exactly the appliance's renditions, an
//!   inventory acknowledged as applied is the one reported (same digest and
//!   version), a repeated report changes nothing, and learned prefixes are
//!   the reported ones with host bits cleared;
//! - a refused report (resync or invalid) changes nothing.

use std::collections::BTreeSet;

use control_client::wire::{
    ApplianceInfo, ErrorBody, FillPlan, Heartbeat, HeartbeatResponse, Inventory, KeySetWire,
    PrefixReport, RegisterRequest, RegisterResponse, Tier, inventory_digest,
};
use ipnet::IpNet;
use serde::Serialize;
use serde::de::DeserializeOwned;
use steering::fleet::registry::{InventoryOutcome, PrefixOutcome, Registry};

const ID: &str = "oca-ams-1";

pub fn run(data: &[u8]) {
    if let Some(r) = round_trip::<RegisterRequest>(data) {
        let mut reg = registry();
        reg.insert(ID, r.info.clone(), "sha".into());
        assert_eq!(reg.appliances[ID].info, r.info);
    }
    if let Some(hb) = round_trip::<Heartbeat>(data) {
        heartbeat(&hb);
    }
    if let Some(inv) = round_trip::<Inventory>(data) {
        inventory(&mut registry(), &inv);
    }
    if let Some(p) = round_trip::<PrefixReport>(data) {
        prefixes(&mut registry(), &p);
    }
    round_trip::<RegisterResponse>(data);
    round_trip::<HeartbeatResponse>(data);
    round_trip::<ErrorBody>(data);
    if let Some(k) = round_trip::<KeySetWire>(data) {
        // An appliance turns the served keys into a verifier; a bad key set is
        // an error, never a panic.
        let _ = k.to_keyset();
    }
    if let Ok(plan) = serde_json::from_slice::<FillPlan>(data) {
        // Scores are f64: serde_json's default float parsing is not exactly
        // round-tripping, so compare everything else exactly.
        let text = serde_json::to_vec(&plan).expect("serialises");
        let mut again: FillPlan = serde_json::from_slice(&text).expect("reparses");
        for (a, b) in again.items.iter_mut().zip(&plan.items) {
            let close = a.score == b.score || (a.score - b.score).abs() <= b.score.abs() * 1e-15;
            assert!(close, "score {} came back as {}", b.score, a.score);
            a.score = b.score;
        }
        assert_eq!(again, plan);
    }
}

/// Parse as `T`; if that works, check that the value survives a round trip.
fn round_trip<T: DeserializeOwned + Serialize + PartialEq + std::fmt::Debug>(
    data: &[u8],
) -> Option<T> {
    let v: T = serde_json::from_slice(data).ok()?;
    let text = serde_json::to_vec(&v).expect("serialises");
    let again: T = serde_json::from_slice(&text).unwrap_or_else(|e| {
        panic!(
            "{v:?} serialises to JSON that does not parse back ({e}): {}",
            String::from_utf8_lossy(&text)
        )
    });
    assert_eq!(again, v, "round trip changed the value");
    Some(v)
}

fn registry() -> Registry {
    let mut reg = Registry::default();
    reg.insert(
        ID,
        ApplianceInfo {
            tier: Tier::Embedded,
            site: "ams".into(),
            region: "eu-west".into(),
            asn: 64512,
            http_url: Some("http://127.0.0.1:8080".into()),
            https_url: None,
            admin_url: "http://127.0.0.1:9090".into(),
            capacity_bps: 10_000_000_000,
            storage_bytes: 0,
            version: "0.1.0".into(),
        },
        "sha".into(),
    );
    reg
}

/// As steering's heartbeat handler: validate rendition names, then take the
/// inventory and the prefixes.
fn heartbeat(hb: &Heartbeat) {
    let mut reg = registry();
    if let Some(inv) = &hb.inventory {
        let reported = match inv {
            Inventory::Full { renditions, .. } => renditions,
            Inventory::Delta { upserted, .. } => upserted,
        };
        if reported
            .iter()
            .all(|r| steering::config::valid_rendition(&r.rendition))
        {
            inventory(&mut reg, inv);
        }
    }
    if let Some(p) = &hb.prefixes {
        prefixes(&mut reg, p);
    }
}

fn check_consistent(reg: &Registry) {
    let a = &reg.appliances[ID];
    assert_eq!(
        a.inventory_digest,
        inventory_digest(a.inventory.values()),
        "stored digest is not the stored inventory's"
    );
    for (name, holding) in &a.inventory {
        assert_eq!(name, &holding.rendition);
        assert!(reg.holders(name).any(|h| h == ID), "index misses {name:?}");
    }
}

fn snapshot(reg: &Registry) -> (u64, String, Vec<String>) {
    let a = &reg.appliances[ID];
    (
        a.inventory_version,
        a.inventory_digest.clone(),
        a.inventory.keys().cloned().collect(),
    )
}

fn inventory(reg: &mut Registry, inv: &Inventory) {
    // Start from a known inventory, so deltas have something to apply to.
    let base = vec![holding("titles/t1/v360", 4), holding("titles/t1/v720", 4)];
    reg.set_inventory(ID, 7, base);
    let before = snapshot(reg);
    let outcome = reg.take_inventory(ID, inv);
    check_consistent(reg);
    let a = &reg.appliances[ID];
    match (outcome, inv) {
        (
            InventoryOutcome::Applied,
            Inventory::Full {
                version, digest, ..
            },
        )
        | (
            InventoryOutcome::Applied,
            Inventory::Delta {
                version, digest, ..
            },
        ) => {
            assert_eq!(a.inventory_version, *version);
            assert_eq!(
                &a.inventory_digest, digest,
                "acknowledged an inventory other than the one reported"
            );
        }
        (InventoryOutcome::Unchanged | InventoryOutcome::ResyncNeeded, _) => {
            assert_eq!(
                snapshot(reg),
                before,
                "a refused report changed the inventory"
            );
        }
    }
    if outcome == InventoryOutcome::Applied {
        // The same report again: a full one applies again, a delta no longer
        // starts from what is held; neither changes anything.
        let after = snapshot(reg);
        let again = reg.take_inventory(ID, inv);
        if matches!(inv, Inventory::Full { .. }) {
            assert_eq!(
                again,
                InventoryOutcome::Applied,
                "a repeated full report refused"
            );
        }
        assert_eq!(
            snapshot(reg),
            after,
            "repeating a report changed the inventory"
        );
    }
    // Renditions no longer held leave no trace in the index.
    let held: BTreeSet<&String> = reg.appliances[ID].inventory.keys().collect();
    for r in ["titles/t1/v360", "titles/t1/v720"] {
        let indexed = reg.holders(r).any(|h| h == ID);
        assert_eq!(
            indexed,
            held.contains(&r.to_owned()),
            "index and inventory disagree on {r}"
        );
    }
}

fn holding(r: &str, n: u64) -> control_client::wire::RenditionHolding {
    control_client::wire::RenditionHolding {
        rendition: r.into(),
        objects: n,
        bytes: n * 1_000_000,
    }
}

fn prefixes(reg: &mut Registry, report: &PrefixReport) {
    let before = (
        reg.appliances[ID].learned.clone(),
        reg.appliances[ID].prefixes_version,
    );
    let outcome = reg.take_prefixes(ID, report);
    let a = &reg.appliances[ID];
    let parse = |v: &[String]| -> Option<Vec<IpNet>> {
        v.iter()
            .map(|p| p.parse::<IpNet>().ok().map(|n| n.trunc()))
            .collect()
    };
    match (outcome, report) {
        (
            PrefixOutcome::Applied,
            PrefixReport::Full {
                version, prefixes, ..
            },
        ) => {
            let expected: BTreeSet<IpNet> = parse(prefixes).expect("applied").into_iter().collect();
            assert_eq!(a.learned.keys().copied().collect::<BTreeSet<_>>(), expected);
            assert_eq!(a.prefixes_version, *version);
        }
        (
            PrefixOutcome::Applied,
            PrefixReport::Delta {
                version, announced, ..
            },
        ) => {
            assert_eq!(a.prefixes_version, *version);
            for p in parse(announced).expect("applied") {
                assert!(a.learned.contains_key(&p), "announced {p} not learned");
            }
        }
        (PrefixOutcome::Invalid | PrefixOutcome::ResyncNeeded, _) => {
            assert_eq!(
                (a.learned.clone(), a.prefixes_version),
                before,
                "refused report changed state"
            );
        }
    }
    for p in a.learned.keys() {
        assert_eq!(*p, p.trunc(), "host bits kept in {p}");
    }
}
