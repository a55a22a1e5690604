//! Making room for planned content: the space under the quota and the
//! headroom, grown by evicting renditions the plan no longer wants, least
//! valuable first (`evict` decides; this module gathers its input and
//! deletes what it chose).

use std::collections::{BTreeMap, HashSet};

use control_client::wire::FillPlan;

use crate::agent::Agent;
use crate::oca::RenditionStat;
use crate::{evict, work};

/// Space for `wanted`: the room under the quota and the headroom, grown by
/// evicting unplanned renditions when it falls short.
pub(crate) async fn make_room(
    agent: &Agent,
    plan: &FillPlan,
    wanted: &[work::Wanted<'_>],
    now: u64,
) -> u64 {
    let on_disk = agent.disks.objects();
    let used: u64 = on_disk.iter().map(|(_, s)| s).sum();
    let fs_room = agent.disks.room(agent.cfg.headroom_percent);
    let room = match agent.cfg.max_bytes {
        Some(max) => fs_room.min(max.saturating_sub(used)),
        None => fs_room,
    };
    let need: u64 = wanted.iter().map(|w| w.object.size).sum();
    if need <= room {
        return room;
    }
    let planned_keys: HashSet<&str> = plan
        .items
        .iter()
        .flat_map(|i| i.objects.iter().map(|o| o.key.as_str()))
        .collect();
    // A directory holding any planned object is never a candidate.
    let planned: HashSet<&str> = planned_keys
        .iter()
        .map(|k| rendition_of(k))
        .chain(plan.items.iter().map(|i| i.rendition.as_str()))
        .collect();
    let unplanned: Vec<(String, u64)> = on_disk
        .into_iter()
        .filter(|(k, _)| !planned_keys.contains(k.as_str()))
        .collect();
    let stats = match &agent.oca {
        Some(oca) => oca.rendition_stats().await,
        None => Vec::new(),
    };
    let victims = evict::choose(candidates(&unplanned, &stats), &planned, need - room, now);
    let mut freed = 0u64;
    for v in victims {
        let prefix = format!("{}/", v.rendition);
        for (key, size) in unplanned
            .iter()
            .filter(|(k, _)| k.starts_with(&prefix) && !k[prefix.len()..].contains('/'))
        {
            match agent.disks.remove(key) {
                Ok(true) => {
                    freed += size;
                    agent.tell_oca(key).await;
                }
                Ok(false) => {}
                Err(e) => agent.fail(format!("cannot evict {key}: {e}")),
            }
        }
        tracing::info!(rendition = %v.rendition, bytes = v.bytes, hits = v.hits, "evicted");
    }
    agent.metrics.evicted_bytes.inc_by(freed);
    agent.set(|s| s.evicted_bytes += freed);
    room + freed
}

/// The directory an object key is in: its rendition.
fn rendition_of(key: &str) -> &str {
    key.rsplit_once('/').map_or("", |(d, _)| d)
}

/// Eviction candidates: the renditions of the objects on disk, their bytes,
/// and oca's access statistics where it has some (none: never requested).
fn candidates(on_disk: &[(String, u64)], stats: &[RenditionStat]) -> Vec<evict::Candidate> {
    let mut by: BTreeMap<&str, u64> = BTreeMap::new();
    for (key, size) in on_disk {
        *by.entry(rendition_of(key)).or_default() += size;
    }
    by.into_iter()
        .map(|(r, bytes)| {
            let s = stats.iter().find(|s| s.rendition == r);
            evict::Candidate {
                rendition: r.to_owned(),
                bytes,
                hits: s.map_or(0, |s| s.hits),
                last_access: s.map_or(0, |s| s.last_access),
            }
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn candidates_sum_bytes_per_rendition_with_oca_statistics() {
        let on_disk = [
            ("t/a/1.m4s".to_owned(), 10),
            ("t/a/2.m4s".to_owned(), 5),
            ("t/b/1.m4s".to_owned(), 7),
        ];
        let stats = [RenditionStat {
            rendition: "t/b".into(),
            hits: 3,
            last_access: 1_700_000_000,
        }];
        let c = candidates(&on_disk, &stats);
        assert_eq!(
            c.iter()
                .map(|c| (c.rendition.as_str(), c.bytes, c.hits, c.last_access))
                .collect::<Vec<_>>(),
            [("t/a", 15, 0, 0), ("t/b", 7, 3, 1_700_000_000)]
        );
    }
}
