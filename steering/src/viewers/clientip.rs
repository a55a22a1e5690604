//! The viewer's address: the connection's peer, or, when the peer is a trusted
//! proxy, the nearest untrusted hop in `X-Forwarded-For` (rightmost first, since
//! everything left of the last trusted proxy may be forged by the client).

use std::net::IpAddr;

use ipnet::IpNet;

pub fn client_ip(peer: IpAddr, forwarded_for: Option<&str>, trusted: &[IpNet]) -> IpAddr {
    let is_trusted = |ip: &IpAddr| trusted.iter().any(|n| n.contains(ip));
    if !is_trusted(&peer) {
        return peer;
    }
    let Some(header) = forwarded_for else {
        return peer;
    };
    let mut nearest = peer;
    for hop in header.rsplit(',') {
        let Ok(ip) = hop.trim().parse::<IpAddr>() else {
            // A garbled hop: trust nothing further left.
            return nearest;
        };
        nearest = ip;
        if !is_trusted(&ip) {
            return ip;
        }
    }
    nearest
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn forwarded_for_only_from_trusted_proxies() {
        let trusted: Vec<IpNet> = vec!["10.0.0.0/8".parse().unwrap()];
        let ip = |s: &str| s.parse::<IpAddr>().unwrap();
        let cases = [
            (
                "203.0.113.9",
                Some("1.2.3.4"),
                "203.0.113.9",
                "untrusted peer: header ignored",
            ),
            ("10.0.0.1", None, "10.0.0.1", "trusted peer without header"),
            ("10.0.0.1", Some("1.2.3.4"), "1.2.3.4", "one proxy"),
            (
                "10.0.0.1",
                Some("6.6.6.6, 1.2.3.4, 10.0.0.2"),
                "1.2.3.4",
                "chain: nearest untrusted",
            ),
            (
                "10.0.0.1",
                Some("10.0.0.3, 10.0.0.2"),
                "10.0.0.3",
                "all trusted: leftmost",
            ),
            (
                "10.0.0.1",
                Some("1.2.3.4, junk"),
                "10.0.0.1",
                "garbage hop stops the walk",
            ),
            ("10.0.0.1", Some("2001:db8::1"), "2001:db8::1", "IPv6"),
        ];
        for (peer, xff, want, why) in cases {
            assert_eq!(client_ip(ip(peer), xff, &trusted), ip(want), "{why}");
        }
    }
}
