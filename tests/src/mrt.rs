//! MRT RIB dumps for tests, written with bgpkit-parser's encoder (the format
//! route collectors publish), so fixtures are generated, not downloaded.

use std::net::IpAddr;
use std::path::Path;

use bgpkit_parser::BgpElem;
use bgpkit_parser::encoder::MrtRibEncoder;
use bgpkit_parser::models::{AsPath, NetworkPrefix};

/// Write a TABLE_DUMP_V2 RIB with one route per `(prefix, AS path)`, as seen
/// from `peers` collector peers each.
pub fn write_rib(path: &Path, routes: &[(&str, &[u32])], peers: &[(&str, u32)]) {
    let mut enc = MrtRibEncoder::new();
    for (peer_ip, peer_asn) in peers {
        for (prefix, as_path) in routes {
            let mut full = vec![*peer_asn];
            full.extend_from_slice(as_path);
            let elem = BgpElem {
                timestamp: 1_795_000_000.0,
                peer_ip: peer_ip.parse::<IpAddr>().unwrap(),
                peer_asn: (*peer_asn).into(),
                prefix: NetworkPrefix::new(prefix.parse().unwrap(), None),
                next_hop: Some(peer_ip.parse().unwrap()),
                as_path: Some(AsPath::from_sequence(full)),
                ..BgpElem::default()
            };
            enc.process_elem(&elem).unwrap();
        }
    }
    std::fs::write(path, enc.export_bytes().unwrap()).unwrap();
}
