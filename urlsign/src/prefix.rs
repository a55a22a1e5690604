//! Client address prefixes (CIDR) a token can be bound to.

use std::fmt;
use std::net::IpAddr;
use std::str::FromStr;

/// An IPv4 or IPv6 network, e.g. `203.0.113.0/24`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ClientPrefix {
    addr: IpAddr,
    len: u8,
}

impl ClientPrefix {
    pub fn new(addr: IpAddr, len: u8) -> Option<ClientPrefix> {
        let max = if addr.is_ipv4() { 32 } else { 128 };
        (len <= max).then_some(ClientPrefix { addr, len })
    }

    /// Whether `ip` is inside this network. IPv4-mapped IPv6 clients
    /// (`::ffff:a.b.c.d`, as a dual-stack socket reports them) match IPv4 prefixes.
    pub fn contains(&self, ip: IpAddr) -> bool {
        // Compare in one address space, IPv4 as IPv4-mapped IPv6: mapping only
        // the client (as this once did) made a prefix written in mapped form,
        // e.g. `::ffff:203.0.113.0/120` from a dual-stack control plane,
        // contain no client at all, so every token bound to it was refused.
        let (net, len) = match self.addr {
            IpAddr::V4(v4) => (v4.to_ipv6_mapped(), u32::from(self.len) + 96),
            IpAddr::V6(v6) => (v6, u32::from(self.len)),
        };
        let ip = match ip {
            IpAddr::V4(v4) => v4.to_ipv6_mapped(),
            IpAddr::V6(v6) => v6,
        };
        let mask = u128::MAX.checked_shl(128 - len).unwrap_or(0);
        u128::from(net) & mask == u128::from(ip) & mask
    }
}

impl FromStr for ClientPrefix {
    type Err = &'static str;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let (addr, len) = match s.split_once('/') {
            Some((a, l)) => (a, Some(l)),
            None => (s, None),
        };
        let addr: IpAddr = addr
            .parse()
            .map_err(|_| "invalid address in client prefix")?;
        let max = if addr.is_ipv4() { 32 } else { 128 };
        let len = match len {
            Some(l) if !l.is_empty() && l.bytes().all(|b| b.is_ascii_digit()) && l.len() <= 3 => {
                l.parse::<u8>().map_err(|_| "invalid prefix length")?
            }
            Some(_) => return Err("invalid prefix length"),
            None => max,
        };
        ClientPrefix::new(addr, len).ok_or("prefix length too long for the address family")
    }
}

impl fmt::Display for ClientPrefix {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}/{}", self.addr, self.len)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn containment() {
        let cases = [
            ("203.0.113.0/24", "203.0.113.77", true),
            ("203.0.113.0/24", "203.0.114.1", false),
            ("10.0.0.0/8", "::ffff:10.1.2.3", true),
            ("0.0.0.0/0", "198.51.100.1", true),
            ("198.51.100.7", "198.51.100.7", true),
            ("198.51.100.7/32", "198.51.100.8", false),
            ("2001:db8::/32", "2001:db8:1::1", true),
            ("2001:db8::/32", "2001:db9::1", false),
            ("::/0", "2001:db8::1", true),
            ("2001:db8::/32", "10.0.0.1", false),
            ("10.0.0.0/8", "2001:db8::1", false),
            // Found by fuzzing (fuzz/regressions/token): a prefix in
            // IPv4-mapped form contained no client, mapped or not.
            ("::ffff:203.0.113.0/120", "::ffff:203.0.113.9", true),
            ("::ffff:203.0.113.0/120", "203.0.113.9", true),
            ("::ffff:203.0.113.0/120", "203.0.114.9", false),
            ("::ffff:0.0.0.0/96", "198.51.100.1", true),
            ("::ffff:203.0.113.9/128", "::ffff:203.0.113.9", true),
            ("::/0", "198.51.100.1", true),
        ];
        for (net, ip, want) in cases {
            let p: ClientPrefix = net.parse().unwrap();
            assert_eq!(p.contains(ip.parse().unwrap()), want, "{net} {ip}");
        }
    }

    #[test]
    fn parse_errors() {
        for bad in [
            "",
            "10.0.0.0/33",
            "2001:db8::/129",
            "10.0.0.0/",
            "10.0.0.0/-1",
            "x/8",
            "10.0.0.0/8/8",
            "10.0.0.0/+8",
        ] {
            assert!(bad.parse::<ClientPrefix>().is_err(), "{bad}");
        }
        assert_eq!(
            "10.1.0.0/16".parse::<ClientPrefix>().unwrap().to_string(),
            "10.1.0.0/16"
        );
    }
}
