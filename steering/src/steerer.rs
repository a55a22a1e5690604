//! The interface between the two halves: a play asks the fleet half where its
//! bytes should come from, and nothing else crosses. The viewers half holds a
//! `dyn Steerer` (the fleet in the service, a fake in a test); the fleet half
//! knows nothing of viewers.

use std::net::IpAddr;

use control_client::wire::Tier;
use serde::{Deserialize, Serialize};

/// One way to the content, as handed to the player.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct IssuedPathway {
    /// Appliance id, or `origin`.
    pub id: String,
    pub tier: Tier,
    pub site: String,
    /// Why it was chosen (`isp-embedded`, `region-ixp`, `any-appliance`,
    /// `saturated`, `origin`).
    pub reason: String,
    /// Signed base URL: object keys resolve under it.
    pub base_url: String,
}

/// What the viewers half asks of the fleet half.
pub trait Steerer: Send + Sync {
    /// Pathways for a new play by `client` of `renditions`: the chosen
    /// appliance, its fallbacks on other appliances, then the origin when one
    /// is configured; each base URL carries `token`. Empty: nothing can serve.
    fn steer(&self, client: IpAddr, renditions: &[&str], token: &str) -> Vec<IssuedPathway>;

    /// The ids of a play's `pathways` in the order its player should try them
    /// now (content steering), from live health and load. `sticky`: the
    /// pathway this play was last told to use first, kept first while it is
    /// as good a choice (so the player does not flip between equals).
    fn priority(
        &self,
        client: IpAddr,
        renditions: &[&str],
        pathways: &[IssuedPathway],
        sticky: Option<&str>,
    ) -> Vec<String>;

    /// What a playing `client` measured of the pathways it fetched from (its
    /// heartbeats' samples), for the estimates per client network and
    /// appliance. A steerer that does not measure ignores it.
    fn measured(&self, client: IpAddr, play: &str, samples: &[crate::fleet::measure::Sample]) {
        let _ = (client, play, samples);
    }
}
