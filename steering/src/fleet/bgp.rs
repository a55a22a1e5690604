//! BGP data at the control plane: the client networks steering maps viewers
//! with, from config plus an imported RIB (prefix → origin ASN, from an MRT
//! TABLE_DUMP_V2 dump as route collectors publish, parsed with bgpkit-parser),
//! with each origin ASN placed in a region by `[[asn]]` config.

use std::collections::HashMap;
use std::io::BufReader;
use std::path::Path;

use bgpkit_parser::models::{MrtMessage, TableDumpV2Message};
use bgpkit_parser::parser::ParserError;
use ipnet::IpNet;

use super::steer::{ClientNetwork, GeoPoint, Networks};
use crate::config::Config;

#[derive(Debug, thiserror::Error)]
pub enum RibError {
    #[error("{path}: {source}")]
    Open {
        path: String,
        source: std::io::Error,
    },
    #[error("record {record}: {reason}")]
    Bad { record: u64, reason: String },
    #[error("no RIB entries (is it a TABLE_DUMP_V2 RIB dump?)")]
    Empty,
}

/// `(prefix, origin ASN)` of every route in an MRT RIB dump; a prefix seen
/// from several peers takes the origin most of them report.
pub fn read_rib(path: &Path) -> Result<Vec<(IpNet, u32)>, RibError> {
    let file = std::fs::File::open(path).map_err(|source| RibError::Open {
        path: path.display().to_string(),
        source,
    })?;
    let mut reader = BufReader::with_capacity(1 << 20, file);
    let mut votes: HashMap<IpNet, HashMap<u32, u32>> = HashMap::new();
    let mut record = 0u64;
    loop {
        let rec = match bgpkit_parser::parse_mrt_record(&mut reader) {
            Ok(r) => r,
            Err(e) if matches!(e.error, ParserError::EofError(_) | ParserError::EofExpected) => {
                break;
            }
            Err(e) => {
                return Err(RibError::Bad {
                    record,
                    reason: e.error.to_string(),
                });
            }
        };
        record += 1;
        if let MrtMessage::TableDumpV2Message(TableDumpV2Message::RibAfi(rib)) = rec.message {
            let prefix = rib.prefix.prefix.trunc();
            for entry in &rib.rib_entries {
                let origin = entry
                    .attributes
                    .as_path()
                    .and_then(|p| p.get_origin_opt())
                    .map(u32::from);
                if let Some(asn) = origin {
                    *votes.entry(prefix).or_default().entry(asn).or_default() += 1;
                }
            }
        }
    }
    if votes.is_empty() {
        return Err(RibError::Empty);
    }
    let mut out: Vec<(IpNet, u32)> = votes
        .into_iter()
        .map(|(p, v)| {
            let asn = v
                .into_iter()
                .max_by_key(|&(asn, n)| (n, std::cmp::Reverse(asn)))
                .map_or(0, |(asn, _)| asn);
            (p, asn)
        })
        .collect();
    out.sort();
    Ok(out)
}

pub(crate) fn point(l: Option<[f64; 2]>) -> Option<GeoPoint> {
    l.map(|[lat, lon]| GeoPoint { lat, lon })
}

/// The client-network table: RIB prefixes whose origin ASN has a region, then
/// the configured `[[network]]`s (added last, so a configured prefix overrides
/// the same prefix from the RIB).
pub fn networks(config: &Config, rib: &[(String, u32)]) -> Networks {
    let regions: HashMap<u32, (&str, Option<[f64; 2]>)> = config
        .asns
        .iter()
        .map(|a| (a.number, (a.region.as_str(), a.location)))
        .collect();
    let mut list: Vec<ClientNetwork> = rib
        .iter()
        .filter_map(|(p, asn)| {
            let (region, location) = regions.get(asn)?;
            Some(ClientNetwork {
                prefix: p.parse().ok()?,
                asn: *asn,
                region: (*region).to_owned(),
                location: point(*location),
            })
        })
        .collect();
    list.extend(config.networks.iter().map(|n| ClientNetwork {
        prefix: n.prefix,
        asn: n.asn,
        region: n.region.clone(),
        location: point(n.location),
    }));
    Networks::build(list)
}
