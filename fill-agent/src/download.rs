//! One planned object from its sources, in the order the backoff allows:
//! the first that delivers it whole and right wins; one that fails, is slow
//! or sends corrupt bytes backs off; a fault of our own (the disk) ends the
//! attempt. `fetch` does the transfer; this module keeps score.

use std::sync::Arc;
use std::time::Instant;

use control_client::wire::{FillObject, FillSource};

use crate::agent::Agent;
use crate::fetch;
use crate::metrics::{OutcomeLabel, SourceLabel};

/// Fetch one object from its sources in order; true once it is committed.
pub(crate) async fn fetch_one(
    agent: &Arc<Agent>,
    object: &FillObject,
    sources: &[FillSource],
) -> bool {
    let usable: Vec<FillSource> = {
        let s = agent.sources.lock().unwrap_or_else(|p| p.into_inner());
        s.order(sources, Instant::now())
            .into_iter()
            .cloned()
            .collect()
    };
    if usable.is_empty() {
        agent.fail(format!("{}: every source is backing off", object.key));
        return false;
    }
    // A partial download resumes on the disk it started on.
    let root = match agent.disks.partial(&object.sha256) {
        Some((root, _)) => root,
        None => match agent.disks.pick_root(agent.cfg.headroom_percent) {
            Some(r) => r,
            None => {
                agent.fail("no usable disk root".into());
                return false;
            }
        },
    };
    for src in usable {
        agent.set(|s| s.sources.push(src.id.clone()));
        let result = fetch::fetch(&agent.fetch, &agent.disks, root, &src, object).await;
        agent.set(|s| {
            if let Some(i) = s.sources.iter().position(|x| *x == src.id) {
                s.sources.remove(i);
            }
        });
        match result {
            Ok(f) => {
                agent
                    .sources
                    .lock()
                    .unwrap_or_else(|p| p.into_inner())
                    .succeeded(&src.id);
                agent
                    .metrics
                    .bytes
                    .get_or_create(&SourceLabel {
                        source: src.id.clone(),
                        kind: src.kind.clone(),
                    })
                    .inc_by(f.transferred);
                agent
                    .metrics
                    .objects
                    .get_or_create(&OutcomeLabel { outcome: "ok" })
                    .inc();
                agent.metrics.remaining_bytes.dec_by(object.size as i64);
                agent.set(|s| {
                    s.objects_done += 1;
                    s.bytes_done += object.size;
                });
                tracing::debug!(key = %object.key, source = %src.id, resumed_from = f.resumed_from, "committed");
                agent.tell_oca(&object.key).await;
                return true;
            }
            Err(e) => {
                agent
                    .metrics
                    .objects
                    .get_or_create(&OutcomeLabel { outcome: e.label() })
                    .inc();
                if !e.blames_source() {
                    agent.fail(format!("{}: {e}", object.key));
                    return false;
                }
                let backoff = agent
                    .sources
                    .lock()
                    .unwrap_or_else(|p| p.into_inner())
                    .failed(&src.id, Instant::now());
                agent.fail(format!(
                    "{} from {}: {e}; skipping that source for {backoff:?}",
                    object.key, src.id
                ));
            }
        }
    }
    false
}
