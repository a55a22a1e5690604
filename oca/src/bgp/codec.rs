//! BGP-4 message framing and thin wrappers around bgpkit-parser.
//!
//! Framing (the 19-byte header, marker and length checks) is ours, because it
//! decides what NOTIFICATION a live session sends and bgpkit-parser is built to
//! be lenient with archived (MRT) data. Bodies are decoded and encoded with
//! bgpkit-parser; two small structural checks are added where its leniency
//! would hide an error a live session must act on (see `decode_update`).

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};

use bgpkit_parser::error::BgpValidationWarning;
use bgpkit_parser::models::capabilities::{
    BgpCapabilityType, FourOctetAsCapability, MultiprotocolExtensionsCapability,
};
use bgpkit_parser::models::{
    Afi, AsPath, Asn, AsnLength, AttrType, AttributeValue, Attributes, BgpError, BgpMessage,
    BgpNotificationMessage, BgpOpenMessage, BgpUpdateMessage, Capability, CapabilityValue,
    Community, LargeCommunity, NetworkPrefix, NextHopAddress, Nlri, OptParam, Origin, ParamValue,
    Safi,
};
use control_client::wire::RouteAttrs;
use ipnet::IpNet;

use super::Family;

/// Marker, length and type.
pub const HEADER_LEN: usize = 19;
/// Largest message without the extended-message capability (RFC 8654), which
/// we do not advertise.
pub const MAX_MESSAGE_LEN: usize = 4096;
/// The 2-byte stand-in for a 4-byte AS number (RFC 6793).
pub const AS_TRANS: u16 = 23456;

/// NOTIFICATION error codes (RFC 4271 §4.5).
pub mod code {
    pub const MESSAGE_HEADER: u8 = 1;
    pub const OPEN: u8 = 2;
    pub const UPDATE: u8 = 3;
    pub const HOLD_TIMER_EXPIRED: u8 = 4;
    pub const FSM: u8 = 5;
    pub const CEASE: u8 = 6;
    pub const ROUTE_REFRESH: u8 = 7;

    /// A label for logs and metrics.
    pub fn name(code: u8) -> &'static str {
        match code {
            MESSAGE_HEADER => "message_header",
            OPEN => "open",
            UPDATE => "update",
            HOLD_TIMER_EXPIRED => "hold_timer_expired",
            FSM => "fsm",
            CEASE => "cease",
            ROUTE_REFRESH => "route_refresh",
            _ => "other",
        }
    }
}

/// A NOTIFICATION: what went wrong, sent just before closing.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Notification {
    pub code: u8,
    pub subcode: u8,
    pub data: Vec<u8>,
}

impl Notification {
    pub fn new(code: u8, subcode: u8) -> Notification {
        Notification {
            code,
            subcode,
            data: Vec::new(),
        }
    }

    pub fn with_data(code: u8, subcode: u8, data: Vec<u8>) -> Notification {
        Notification {
            code,
            subcode,
            data,
        }
    }
}

impl std::fmt::Display for Notification {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "{} ({}/{})",
            code::name(self.code),
            self.code,
            self.subcode
        )
    }
}

/// An OPEN, reduced to what the session checks and negotiates.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Open {
    pub version: u8,
    /// The 4-byte AS number when the 4-octet capability is present, else the 2-byte field.
    pub asn: u32,
    pub hold_time: u16,
    pub router_id: Ipv4Addr,
    /// Whether the 4-octet AS number capability was advertised.
    pub four_octet_as: bool,
    /// Unicast families advertised with the multiprotocol capability.
    pub families: Vec<Family>,
}

/// An UPDATE, reduced to the unicast prefixes it announces and withdraws.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Update {
    pub announced: Vec<IpNet>,
    pub withdrawn: Vec<IpNet>,
    /// Set when this UPDATE is the End-of-RIB marker of a family (RFC 4724 §2).
    pub end_of_rib: Option<Family>,
    /// Why announcements were turned into withdrawals (RFC 7606 treat-as-withdraw).
    pub treated_as_withdraw: Option<String>,
    /// Communities and MED the announced prefixes carry.
    pub attrs: RouteAttrs,
}

/// The messages a session exchanges.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Message {
    Open(Open),
    Update(Update),
    Notification(Notification),
    Keepalive,
    /// We never advertise route refresh, so one is ignored (RFC 2918 §4).
    RouteRefresh,
}

/// Why bytes from a peer are not a valid message. Each maps to the
/// NOTIFICATION RFC 4271 §6 (and RFC 7606 for UPDATEs) asks for.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum DecodeError {
    #[error("header marker is not all ones")]
    Marker,
    #[error("message length {0} is out of range for its type")]
    Length(u16),
    #[error("unknown message type {0}")]
    Type(u8),
    #[error("malformed OPEN: {0}")]
    Open(String),
    #[error("OPEN carries optional parameter type {0}, which we do not support")]
    OpenParameter(u8),
    #[error("malformed UPDATE attribute list: {0}")]
    AttributeList(String),
    #[error("malformed multiprotocol attribute: {0}")]
    Multiprotocol(String),
    #[error("malformed NLRI: {0}")]
    Nlri(String),
    #[error("malformed NOTIFICATION: {0}")]
    Notification(String),
}

impl DecodeError {
    /// The NOTIFICATION to send before closing the session.
    pub fn notification(&self) -> Notification {
        match self {
            DecodeError::Marker => Notification::new(code::MESSAGE_HEADER, 1),
            DecodeError::Length(len) => {
                Notification::with_data(code::MESSAGE_HEADER, 2, len.to_be_bytes().to_vec())
            }
            DecodeError::Type(t) => Notification::with_data(code::MESSAGE_HEADER, 3, vec![*t]),
            DecodeError::Open(_) => Notification::new(code::OPEN, 0),
            DecodeError::OpenParameter(_) => Notification::new(code::OPEN, 4),
            DecodeError::AttributeList(_) => Notification::new(code::UPDATE, 1),
            DecodeError::Multiprotocol(_) => Notification::new(code::UPDATE, 9),
            DecodeError::Nlri(_) => Notification::new(code::UPDATE, 10),
            // A broken NOTIFICATION still ends the session; say why in general terms.
            DecodeError::Notification(_) => Notification::new(code::MESSAGE_HEADER, 0),
        }
    }
}

/// Encoding failed (bgpkit-parser refused a value); a bug, not peer input.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("cannot encode BGP message: {0}")]
pub struct EncodeError(String);

/// The length of the first whole message in `buf`, `None` if more bytes are
/// needed, or the header error (RFC 4271 §6.1) as soon as it is visible.
pub fn frame(buf: &[u8]) -> Result<Option<usize>, DecodeError> {
    // Check the marker as bytes arrive, so garbage is refused without waiting.
    if buf.iter().take(16).any(|&b| b != 0xff) {
        return Err(DecodeError::Marker);
    }
    if buf.len() < HEADER_LEN {
        return Ok(None);
    }
    let len = u16::from_be_bytes([buf[16], buf[17]]);
    let ty = buf[18];
    if !(HEADER_LEN..=MAX_MESSAGE_LEN).contains(&(len as usize)) {
        return Err(DecodeError::Length(len));
    }
    // Smallest length of each type; a KEEPALIVE is exactly a header.
    let min = match ty {
        1 => 29,
        2 => 23,
        3 => 21,
        4 => 19,
        5 => 23,
        t => return Err(DecodeError::Type(t)),
    };
    if (len as usize) < min || (ty == 4 && len as usize != HEADER_LEN) {
        return Err(DecodeError::Length(len));
    }
    Ok((buf.len() >= len as usize).then_some(len as usize))
}

/// Decode one framed message (as `frame` delimited it). `four_octet_as` is
/// whether both sides advertised 4-byte AS numbers, which sets AS_PATH width.
pub fn decode(msg: &[u8], four_octet_as: bool) -> Result<Message, DecodeError> {
    match frame(msg)? {
        Some(n) if n == msg.len() => {}
        _ => return Err(DecodeError::Length(msg.len().min(u16::MAX as usize) as u16)),
    }
    let body = &msg[HEADER_LEN..];
    match msg[18] {
        1 => decode_open(msg),
        2 => decode_update(msg, body, four_octet_as).map(Message::Update),
        3 => match parse(msg, four_octet_as) {
            Ok(BgpMessage::Notification(n)) => {
                let (code, subcode) = n.error.get_codes();
                Ok(Message::Notification(Notification::with_data(
                    code, subcode, n.data,
                )))
            }
            Ok(_) => Err(DecodeError::Notification("unexpected type".into())),
            Err(e) => Err(DecodeError::Notification(e)),
        },
        4 => Ok(Message::Keepalive),
        // Type 5 is the only one left after framing.
        _ => Ok(Message::RouteRefresh),
    }
}

fn parse(msg: &[u8], four_octet_as: bool) -> Result<BgpMessage, String> {
    let asn_len = if four_octet_as {
        AsnLength::Bits32
    } else {
        AsnLength::Bits16
    };
    let mut data = msg.to_vec().into();
    bgpkit_parser::parser::bgp::parse_bgp_message(&mut data, false, &asn_len)
        .map_err(|e| e.to_string())
}

fn decode_open(msg: &[u8]) -> Result<Message, DecodeError> {
    // bgpkit-parser stops quietly at a truncated parameter; the declared
    // parameter length must match what follows (RFC 4271 §6.2).
    let declared = msg[HEADER_LEN + 9] as usize;
    let extended = declared == 255 && msg.get(HEADER_LEN + 10) == Some(&255);
    if !extended && declared != msg.len() - HEADER_LEN - 10 {
        return Err(DecodeError::Open(format!(
            "optional parameters length {declared} does not match the message"
        )));
    }
    let open = match parse(msg, false) {
        Ok(BgpMessage::Open(o)) => o,
        Ok(_) => return Err(DecodeError::Open("unexpected type".into())),
        Err(e) => return Err(DecodeError::Open(e)),
    };
    let mut four = None;
    let mut families = Vec::new();
    for p in &open.opt_params {
        let ParamValue::Capacities(caps) = &p.param_value else {
            return Err(DecodeError::OpenParameter(p.param_type));
        };
        for c in caps {
            match &c.value {
                CapabilityValue::FourOctetAs(f) => four = Some(f.asn),
                CapabilityValue::MultiprotocolExtensions(m) if m.safi == Safi::Unicast => {
                    let f = match m.afi {
                        Afi::Ipv4 => Family::Ipv4,
                        Afi::Ipv6 => Family::Ipv6,
                        _ => continue,
                    };
                    if !families.contains(&f) {
                        families.push(f);
                    }
                }
                // Capabilities we do not use are ignored (RFC 5492 §3).
                _ => {}
            }
        }
    }
    Ok(Message::Open(Open {
        version: open.version,
        asn: four.unwrap_or(open.asn.to_u32()),
        hold_time: open.hold_time,
        router_id: open.bgp_identifier,
        four_octet_as: four.is_some(),
        families,
    }))
}

/// The attribute section of an UPDATE body, checked against the body's framing.
fn update_attributes(body: &[u8]) -> Result<&[u8], DecodeError> {
    let bad = |what: &str| DecodeError::AttributeList(what.to_owned());
    let wlen = body
        .get(..2)
        .map(|b| u16::from_be_bytes([b[0], b[1]]) as usize)
        .ok_or_else(|| bad("truncated"))?;
    let rest = body
        .get(2 + wlen..)
        .ok_or_else(|| bad("withdrawn length"))?;
    let alen = rest
        .get(..2)
        .map(|b| u16::from_be_bytes([b[0], b[1]]) as usize)
        .ok_or_else(|| bad("truncated"))?;
    rest.get(2..2 + alen).ok_or_else(|| bad("attribute length"))
}

/// Walk attribute headers; every attribute must fit exactly. bgpkit-parser
/// keeps what it parsed before a truncated attribute, which on a live session
/// could silently drop an MP_REACH_NLRI (RFC 7606 §4 asks for a reset).
fn attribute_values(mut attrs: &[u8]) -> Result<Vec<(u8, &[u8])>, DecodeError> {
    let mut out = Vec::new();
    while !attrs.is_empty() {
        // Flags, type, then a 1-byte length or, with the extended-length flag, 2 bytes.
        let (ty, len, head) = match attrs {
            [f, t, a, b, ..] if f & 0x10 != 0 => (*t, u16::from_be_bytes([*a, *b]) as usize, 4),
            [f, t, a, ..] if f & 0x10 == 0 => (*t, *a as usize, 3),
            _ => return Err(DecodeError::AttributeList("truncated attribute".into())),
        };
        let value = attrs
            .get(head..head + len)
            .ok_or_else(|| DecodeError::AttributeList(format!("attribute {ty} overruns")))?;
        out.push((ty, value));
        attrs = &attrs[head + len..];
    }
    Ok(out)
}

fn decode_update(msg: &[u8], body: &[u8], four_octet_as: bool) -> Result<Update, DecodeError> {
    let attrs = attribute_values(update_attributes(body)?)?;
    let update = match parse(msg, four_octet_as) {
        Ok(BgpMessage::Update(u)) => u,
        Ok(_) => return Err(DecodeError::AttributeList("unexpected type".into())),
        Err(e) => return Err(DecodeError::AttributeList(e)),
    };
    // bgpkit-parser guesses ADD-PATH encoding wherever an NLRI list has a
    // zero byte where a prefix starts (a default route), and can then fail
    // on a valid list: a classic NLRI field comes back as a MalformedNlri
    // warning, a unicast MP_(UN)REACH_NLRI as a raw attribute. Such UPDATEs
    // are re-read strictly below (found by fuzzing: a router announcing
    // 0.0.0.0/0 among other prefixes had its session reset). Raw
    // multiprotocol attributes of other families still reset: we cannot tell
    // what was announced.
    let mut reread = false;
    for a in update.attributes.iter() {
        if let AttributeValue::Raw(r) = a
            && (r.code == 14 || r.code == 15)
        {
            match r.bytes.get(..3) {
                Some([0, 1 | 2, 1]) => reread = true,
                _ => return Err(DecodeError::Multiprotocol(format!("attribute {}", r.code))),
            }
        }
    }
    let mut warnings = Vec::new();
    for w in update.attributes.validation_warnings() {
        match w {
            BgpValidationWarning::MalformedNlri { .. } => reread = true,
            // A raw multiprotocol attribute is re-read or refused above, so
            // its parse error is no reason to treat the UPDATE as withdraw.
            BgpValidationWarning::OptionalAttributeError { attr_type, .. }
            | BgpValidationWarning::PartialAttributeError { attr_type, .. }
                if matches!(
                    *attr_type,
                    AttrType::MP_REACHABLE_NLRI | AttrType::MP_UNREACHABLE_NLRI
                ) => {}
            other => warnings.push(format!("{other:?}")),
        }
    }
    if !reread && update.is_end_of_rib() {
        let family = match update.attributes.get_unreachable_nlri() {
            None => Some(Family::Ipv4),
            Some(n) => unicast(n),
        };
        if let Some(f) = family {
            return Ok(Update {
                end_of_rib: Some(f),
                ..Update::default()
            });
        }
    }
    let mut out = Update::default();
    let mut guessed_add_path = false;
    let mut take = |into: &mut Vec<IpNet>, prefixes: &[NetworkPrefix]| {
        for p in prefixes {
            guessed_add_path |= p.path_id.is_some();
            into.push(p.prefix.trunc());
        }
    };
    take(&mut out.withdrawn, &update.withdrawn_prefixes);
    take(&mut out.announced, &update.announced_prefixes);
    for a in update.attributes.iter() {
        match a {
            AttributeValue::MpReachNlri(n) if unicast(n).is_some() => {
                take(&mut out.announced, &n.prefixes)
            }
            AttributeValue::MpUnreachNlri(n) if unicast(n).is_some() => {
                take(&mut out.withdrawn, &n.prefixes)
            }
            _ => {}
        }
    }
    if guessed_add_path || reread {
        // bgpkit-parser guesses ADD-PATH encoding when an NLRI field starts
        // with a zero byte (a default route) and can then misread the rest.
        // We never negotiate ADD-PATH, so re-read the prefixes strictly.
        out = strict_prefixes(body, &attrs)?;
    }
    if !out.announced.is_empty() {
        out.attrs = route_attrs(&update.attributes);
    }
    if !warnings.is_empty() && !out.announced.is_empty() {
        // RFC 7606 §2: an attribute error that leaves the NLRI readable means
        // treat-as-withdraw, not a session reset.
        let announced = std::mem::take(&mut out.announced);
        out.withdrawn.extend(announced);
        out.treated_as_withdraw = Some(warnings.join("; "));
        out.attrs = RouteAttrs::default();
    }
    Ok(out)
}

/// The communities (standard and large, numeric, sorted) and MED of an
/// UPDATE's path attributes. Extended communities carry no preference we
/// use and are left out.
fn route_attrs(attrs: &Attributes) -> RouteAttrs {
    let mut communities = Vec::new();
    let mut med = None;
    for a in attrs.iter() {
        match a {
            AttributeValue::Communities(list) => communities.extend(list.iter().map(|c| {
                let (high, low) = match *c {
                    Community::NoExport => (0xFFFF, 0xFF01),
                    Community::NoAdvertise => (0xFFFF, 0xFF02),
                    Community::NoExportSubConfed => (0xFFFF, 0xFF03),
                    Community::Custom(asn, value) => (asn.to_u32(), u32::from(value)),
                };
                format!("{high}:{low}")
            })),
            AttributeValue::LargeCommunities(list) => communities
                .extend(list.iter().map(|c| {
                    format!("{}:{}:{}", c.global_admin, c.local_data[0], c.local_data[1])
                })),
            AttributeValue::MultiExitDiscriminator(m) => med = Some(*m),
            _ => {}
        }
    }
    communities.sort();
    communities.dedup();
    RouteAttrs { communities, med }
}

fn unicast(n: &Nlri) -> Option<Family> {
    match (n.afi, n.safi) {
        (Afi::Ipv4, Safi::Unicast) => Some(Family::Ipv4),
        (Afi::Ipv6, Safi::Unicast) => Some(Family::Ipv6),
        _ => None,
    }
}

/// Prefixes of an UPDATE read without ADD-PATH guessing (see `decode_update`).
fn strict_prefixes(body: &[u8], attrs: &[(u8, &[u8])]) -> Result<Update, DecodeError> {
    let wlen = u16::from_be_bytes([body[0], body[1]]) as usize;
    let alen = u16::from_be_bytes([body[2 + wlen], body[3 + wlen]]) as usize;
    let mut out = Update {
        withdrawn: nlri(&body[2..2 + wlen], Family::Ipv4)?,
        announced: nlri(&body[4 + wlen + alen..], Family::Ipv4)?,
        ..Update::default()
    };
    for &(ty, value) in attrs {
        let bad = || DecodeError::Multiprotocol(format!("attribute {ty}"));
        let (afi, safi) = match value {
            [a, b, s, ..] => (u16::from_be_bytes([*a, *b]), *s),
            _ => continue,
        };
        let family = match (afi, safi) {
            (1, 1) => Family::Ipv4,
            (2, 1) => Family::Ipv6,
            _ => continue,
        };
        match ty {
            14 => {
                let nh = *value.get(3).ok_or_else(bad)? as usize;
                // AFI, SAFI, next-hop length, next hop, reserved byte.
                let rest = value.get(5 + nh..).ok_or_else(bad)?;
                out.announced.extend(nlri(rest, family)?);
            }
            15 => out.withdrawn.extend(nlri(&value[3..], family)?),
            _ => {}
        }
    }
    Ok(out)
}

/// A plain NLRI list (RFC 4271 §4.3): length in bits, then the significant bytes.
fn nlri(mut bytes: &[u8], family: Family) -> Result<Vec<IpNet>, DecodeError> {
    let max = match family {
        Family::Ipv4 => 32,
        Family::Ipv6 => 128,
    };
    let mut out = Vec::new();
    while let Some((&bits, rest)) = bytes.split_first() {
        let n = (bits as usize).div_ceil(8);
        if bits > max || rest.len() < n {
            return Err(DecodeError::Nlri(format!("bad prefix length {bits}")));
        }
        let mut octets = [0u8; 16];
        octets[..n].copy_from_slice(&rest[..n]);
        let addr = match family {
            Family::Ipv4 => IpAddr::from([octets[0], octets[1], octets[2], octets[3]]),
            Family::Ipv6 => IpAddr::from(octets),
        };
        let net = IpNet::new(addr, bits).map_err(|e| DecodeError::Nlri(e.to_string()))?;
        out.push(net.trunc());
        bytes = &rest[n..];
    }
    Ok(out)
}

/// Encode a message we send (OPEN, KEEPALIVE, NOTIFICATION). UPDATEs go
/// through `encode_update`, which test peers use: oca announces nothing.
pub fn encode(msg: &Message) -> Result<Vec<u8>, EncodeError> {
    let m = match msg {
        Message::Open(o) => BgpMessage::Open(open_message(o)),
        Message::Notification(n) => BgpMessage::Notification(BgpNotificationMessage {
            error: BgpError::new(n.code, n.subcode),
            data: n.data.clone(),
        }),
        Message::Keepalive => BgpMessage::KeepAlive,
        Message::Update(_) | Message::RouteRefresh => {
            return Err(EncodeError(
                "oca sends no UPDATE or ROUTE-REFRESH; see encode_update".into(),
            ));
        }
    };
    finish(&m, AsnLength::Bits32)
}

fn finish(m: &BgpMessage, asn_len: AsnLength) -> Result<Vec<u8>, EncodeError> {
    let bytes = m.encode(asn_len).map_err(|e| EncodeError(e.to_string()))?;
    if bytes.len() > MAX_MESSAGE_LEN {
        return Err(EncodeError(format!("{} bytes is too long", bytes.len())));
    }
    Ok(bytes.to_vec())
}

fn open_message(o: &Open) -> BgpOpenMessage {
    let mut caps: Vec<Capability> = o
        .families
        .iter()
        .map(|f| Capability {
            ty: BgpCapabilityType::MULTIPROTOCOL_EXTENSIONS_FOR_BGP_4,
            value: CapabilityValue::MultiprotocolExtensions(
                MultiprotocolExtensionsCapability::new(
                    match f {
                        Family::Ipv4 => Afi::Ipv4,
                        Family::Ipv6 => Afi::Ipv6,
                    },
                    Safi::Unicast,
                ),
            ),
        })
        .collect();
    if o.four_octet_as {
        caps.push(Capability {
            ty: BgpCapabilityType::SUPPORT_FOR_4_OCTET_AS_NUMBER_CAPABILITY,
            value: CapabilityValue::FourOctetAs(FourOctetAsCapability::new(o.asn)),
        });
    }
    let two_byte = u16::try_from(o.asn).unwrap_or(AS_TRANS);
    BgpOpenMessage {
        version: o.version,
        asn: Asn::new_16bit(two_byte),
        hold_time: o.hold_time,
        bgp_identifier: o.router_id,
        extended_length: false,
        // One parameter holding all capabilities, as most speakers send it.
        opt_params: if caps.is_empty() {
            Vec::new()
        } else {
            vec![OptParam {
                param_type: 2,
                param_value: ParamValue::Capacities(caps),
            }]
        },
    }
}

/// Encode an UPDATE as a router would send it: IPv4 in the classic fields
/// with ORIGIN, AS_PATH [`origin_as`] and NEXT_HOP; IPv6 in MP_REACH_NLRI /
/// MP_UNREACH_NLRI. Next hops are documentation addresses. An End-of-RIB
/// update encodes just the marker.
pub fn encode_update(
    u: &Update,
    origin_as: u32,
    four_octet_as: bool,
) -> Result<Vec<u8>, EncodeError> {
    let prefixes = |nets: &[IpNet], v6: bool| -> Vec<NetworkPrefix> {
        nets.iter()
            .filter(|n| matches!(n, IpNet::V6(_)) == v6)
            .map(|n| NetworkPrefix::new(*n, None))
            .collect()
    };
    let mp = |prefixes: Vec<NetworkPrefix>, next_hop: Option<NextHopAddress>| Nlri {
        afi: Afi::Ipv6,
        safi: Safi::Unicast,
        next_hop,
        prefixes,
        labeled_prefixes: None,
        link_state_nlris: None,
        flowspec_nlris: None,
    };
    let mut values = Vec::new();
    let mut msg = BgpUpdateMessage::default();
    match u.end_of_rib {
        Some(Family::Ipv4) => {}
        Some(Family::Ipv6) => values.push(AttributeValue::MpUnreachNlri(mp(Vec::new(), None))),
        None => {
            msg.withdrawn_prefixes = prefixes(&u.withdrawn, false);
            msg.announced_prefixes = prefixes(&u.announced, false);
            let (v6_announced, v6_withdrawn) =
                (prefixes(&u.announced, true), prefixes(&u.withdrawn, true));
            if !u.announced.is_empty() {
                values.push(AttributeValue::Origin(Origin::IGP));
                values.push(AttributeValue::AsPath(AsPath::from_sequence([origin_as])));
                if let Some(m) = u.attrs.med {
                    values.push(AttributeValue::MultiExitDiscriminator(m));
                }
                let parts = |c: &String| -> Vec<u32> {
                    c.split(':').filter_map(|p| p.parse().ok()).collect()
                };
                let (mut standard, mut large) = (Vec::new(), Vec::new());
                for c in &u.attrs.communities {
                    match parts(c)[..] {
                        [high, low] => {
                            standard.push(Community::Custom(Asn::new_32bit(high), low as u16))
                        }
                        [global, a, b] => large.push(LargeCommunity::new(global, [a, b])),
                        _ => return Err(EncodeError(format!("bad community {c:?}"))),
                    }
                }
                if !standard.is_empty() {
                    values.push(AttributeValue::Communities(standard));
                }
                if !large.is_empty() {
                    values.push(AttributeValue::LargeCommunities(large));
                }
            }
            if !msg.announced_prefixes.is_empty() {
                values.push(AttributeValue::NextHop(IpAddr::V4(Ipv4Addr::new(
                    198, 51, 100, 1,
                ))));
            }
            if !v6_announced.is_empty() {
                let nh = NextHopAddress::Ipv6(Ipv6Addr::new(0x2001, 0xdb8, 0, 0, 0, 0, 0, 1));
                values.push(AttributeValue::MpReachNlri(mp(v6_announced, Some(nh))));
            }
            if !v6_withdrawn.is_empty() {
                values.push(AttributeValue::MpUnreachNlri(mp(v6_withdrawn, None)));
            }
        }
    }
    msg.attributes = Attributes::from_iter(values);
    let asn_len = if four_octet_as {
        AsnLength::Bits32
    } else {
        AsnLength::Bits16
    };
    finish(&BgpMessage::Update(msg), asn_len)
}
