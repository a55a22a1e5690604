//! `bgp`: oca's BGP framing and decoder, the session state machine, and the
//! learned-prefix table it feeds, driven by a script of peer bytes, decoded
//! messages and timer ticks with `now` advancing.
//!
//! Input: a list of operations, each a tag byte and its operands:
//!
//! | tag % 8 | operation                                                        |
//! |---------|------------------------------------------------------------------|
//! | 0       | bytes from the peer: u16 length (big-endian), then the bytes     |
//! | 1       | time passes: u16 seconds, then a Tick                            |
//! | 2       | the connection is lost                                           |
//! | 3       | we stop the session (Cease, subcode byte)                        |
//! | 4       | a new connection (only when the last one is over)                |
//! | 5       | a message built from the operands, encoded and sent as bytes     |
//! | 6       | the same message handed to the session already decoded          |
//! | 7       | bytes from the peer as in 0, arriving one small read at a time   |
//!
//! A connection is open from the start. Seeds are real messages wrapped in
//! tag 0 (see `examples/make_seeds.rs`).
//!
//! Properties:
//! - nothing panics; a NOTIFICATION we send is always followed by Close, and
//!   nothing follows a Close;
//! - routes (Learned, End-of-RIB) are reported only between Established and
//!   Close, never after a NOTIFICATION or a lost connection, and prefixes come
//!   with their host bits cleared;
//! - the session's state and timers agree with what it reported: after a
//!   Tick no timer is overdue, and an overdue timer always produces an action;
//! - an UPDATE we encode decodes to the same prefixes;
//! - the learned-prefix table equals a plain model of its documented rules
//!   (live prefixes of an established session plus a lost session's stale
//!   prefixes until the grace period ends).

use std::collections::BTreeSet;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};
use std::time::{Duration, Instant};

use ipnet::IpNet;
use oca::bgp::Family;
use oca::bgp::codec::{self, Message, Notification, Open, Update, code};
use oca::bgp::fsm::{Action, Event, Reason, Session, Settings, State};
use oca::bgp::rib::Rib;

const PEER_ASN: u32 = 64512;
const GRACE: Duration = Duration::from_secs(120);

fn settings() -> Settings {
    Settings {
        local_asn: 4_200_000_001,
        router_id: Ipv4Addr::new(198, 51, 100, 10),
        hold_time: 90,
        peer_asn: PEER_ASN,
    }
}

fn neighbor() -> IpAddr {
    IpAddr::V4(Ipv4Addr::new(198, 51, 100, 1))
}

/// Reads operands; past the end every read yields zero.
struct Ops<'a> {
    data: &'a [u8],
}

impl<'a> Ops<'a> {
    fn byte(&mut self) -> u8 {
        match self.data.split_first() {
            Some((&b, rest)) => {
                self.data = rest;
                b
            }
            None => 0,
        }
    }

    fn u16(&mut self) -> u16 {
        u16::from_be_bytes([self.byte(), self.byte()])
    }

    fn u32(&mut self) -> u32 {
        u32::from_be_bytes([self.byte(), self.byte(), self.byte(), self.byte()])
    }

    fn bytes(&mut self, n: usize) -> &'a [u8] {
        let (head, rest) = self.data.split_at(n.min(self.data.len()));
        self.data = rest;
        head
    }

    fn prefix(&mut self) -> IpNet {
        let kind = self.byte();
        let len = self.byte();
        if kind & 1 == 0 {
            let addr = Ipv4Addr::from(self.u32());
            IpNet::new(IpAddr::V4(addr), len % 33)
                .expect("valid length")
                .trunc()
        } else {
            let mut o = [0u8; 16];
            let got = self.bytes(16);
            o[..got.len()].copy_from_slice(got);
            // Mostly documentation space, as real routers' test feeds are.
            if kind & 2 == 0 {
                o[..4].copy_from_slice(&[0x20, 0x01, 0x0d, 0xb8]);
            }
            IpNet::new(IpAddr::V6(Ipv6Addr::from(o)), len % 129)
                .expect("valid length")
                .trunc()
        }
    }

    fn prefixes(&mut self) -> Vec<IpNet> {
        let n = self.byte() % 24;
        (0..n).map(|_| self.prefix()).collect()
    }

    fn message(&mut self) -> Message {
        match self.byte() % 5 {
            0 => {
                let flags = self.byte();
                let mut families = Vec::new();
                if flags & 1 != 0 {
                    families.push(Family::Ipv4);
                }
                if flags & 2 != 0 {
                    families.push(Family::Ipv6);
                }
                Message::Open(Open {
                    version: if flags & 4 == 0 { 4 } else { self.byte() },
                    asn: if flags & 8 == 0 { PEER_ASN } else { self.u32() },
                    hold_time: self.u16(),
                    router_id: Ipv4Addr::from(self.u32()),
                    four_octet_as: flags & 16 == 0,
                    families,
                })
            }
            1 => {
                let eor = self.byte();
                let end_of_rib = match eor % 4 {
                    1 => Some(Family::Ipv4),
                    2 => Some(Family::Ipv6),
                    _ => None,
                };
                let (announced, withdrawn) = match end_of_rib {
                    Some(_) => (Vec::new(), Vec::new()),
                    None => (self.prefixes(), self.prefixes()),
                };
                Message::Update(Update {
                    announced,
                    withdrawn,
                    end_of_rib,
                    treated_as_withdraw: None,
                    attrs: Default::default(),
                })
            }
            2 => Message::Keepalive,
            3 => {
                let (code, subcode) = (self.byte(), self.byte());
                let len = usize::from(self.byte() % 8);
                Message::Notification(Notification::with_data(
                    code,
                    subcode,
                    self.bytes(len).to_vec(),
                ))
            }
            _ => Message::RouteRefresh,
        }
    }
}

/// The learned-prefix rules of `rib.rs`, written plainly for one neighbour.
#[derive(Default)]
struct Model {
    established: bool,
    live: BTreeSet<IpNet>,
    stale: BTreeSet<IpNet>,
    stale_until: Option<Instant>,
}

impl Model {
    fn expire(&mut self, now: Instant) {
        if self.stale_until.is_some_and(|t| t <= now) {
            self.stale.clear();
            self.stale_until = None;
        }
    }

    fn up(&mut self, now: Instant) {
        self.expire(now);
        self.established = true;
    }

    fn apply(&mut self, announced: &[IpNet], withdrawn: &[IpNet], now: Instant) {
        self.expire(now);
        if !self.established {
            return;
        }
        for p in withdrawn {
            self.live.remove(p);
            self.stale.remove(p);
        }
        self.live.extend(announced.iter().copied());
        if self.stale.is_empty() {
            self.stale_until = None;
        }
    }

    fn end_of_rib(&mut self, family: Family, now: Instant) {
        self.expire(now);
        if !self.established {
            return;
        }
        self.stale.retain(|p| Family::of(p) != family);
        if self.stale.is_empty() {
            self.stale_until = None;
        }
    }

    /// A session that was established is lost: its prefixes go stale for the
    /// grace period. A connection that never got that far had nothing to
    /// lose, so it changes nothing (and cannot prolong an earlier loss).
    fn down(&mut self, now: Instant) {
        if !self.established {
            return;
        }
        self.established = false;
        self.stale.append(&mut self.live);
        self.stale_until = (!self.stale.is_empty()).then(|| now + GRACE);
        self.expire(now);
    }

    fn merged(&self) -> BTreeSet<IpNet> {
        self.live.union(&self.stale).copied().collect()
    }
}

struct Harness {
    session: Session,
    buf: Vec<u8>,
    now: Instant,
    /// Between Established and Close, as the actions told it.
    established: bool,
    rib: Rib,
    model: Model,
}

pub fn run(data: &[u8]) {
    let mut h = Harness {
        session: Session::new(settings()),
        buf: Vec::new(),
        now: Instant::now(),
        established: false,
        rib: Rib::new(GRACE),
        model: Model::default(),
    };
    let actions = h.session.handle(Event::Connected { now: h.now });
    h.take(actions);
    let mut ops = Ops { data };
    let mut steps = 0;
    while !ops.data.is_empty() && steps < 512 {
        steps += 1;
        h.step(&mut ops);
    }
}

impl Harness {
    fn step(&mut self, ops: &mut Ops<'_>) {
        let now = self.now;
        match ops.byte() % 8 {
            0 => {
                let n = usize::from(ops.u16());
                self.buf.extend_from_slice(ops.bytes(n));
                let actions = self.session.on_bytes(&mut self.buf, now);
                self.take(actions);
            }
            1 => {
                self.now += Duration::from_secs(u64::from(ops.u16()));
                let now = self.now;
                let overdue = self.session.state() != State::Idle
                    && self.session.next_deadline().is_some_and(|d| d <= now);
                let actions = self.session.handle(Event::Tick { now });
                assert!(
                    !overdue || !actions.is_empty(),
                    "an overdue timer did nothing"
                );
                self.take(actions);
                if let Some(d) = self.session.next_deadline() {
                    assert!(d > now, "a timer is still overdue after a Tick");
                }
            }
            2 => {
                let actions = self.session.handle(Event::Closed { now });
                self.take(actions);
            }
            3 => {
                let notification = Notification::new(code::CEASE, ops.byte());
                let actions = self.session.handle(Event::Stop { notification, now });
                self.take(actions);
            }
            4 => {
                if self.session.state() == State::Idle {
                    self.session = Session::new(settings());
                    self.buf.clear();
                    let actions = self.session.handle(Event::Connected { now });
                    self.take(actions);
                }
            }
            5 => {
                let msg = ops.message();
                let four = self.session.peer().is_some_and(|p| p.four_octet_as);
                let encoded = match &msg {
                    Message::Update(u) => {
                        let bytes = codec::encode_update(u, PEER_ASN, four);
                        if let Ok(bytes) = &bytes {
                            check_update_round_trip(u, bytes, four);
                        }
                        bytes
                    }
                    other => codec::encode(other),
                };
                match encoded {
                    Ok(bytes) => {
                        self.buf.extend_from_slice(&bytes);
                        let actions = self.session.on_bytes(&mut self.buf, now);
                        self.take(actions);
                    }
                    Err(_) => self.received(msg),
                }
            }
            6 => {
                let msg = ops.message();
                self.received(msg);
            }
            _ => {
                let n = usize::from(ops.u16());
                let bytes = ops.bytes(n);
                for piece in bytes.chunks(7) {
                    self.buf.extend_from_slice(piece);
                    let actions = self.session.on_bytes(&mut self.buf, now);
                    self.take(actions);
                }
            }
        }
    }

    fn received(&mut self, msg: Message) {
        let now = self.now;
        let actions = self.session.handle(Event::Received { msg, now });
        self.take(actions);
    }

    /// Check a batch of actions and carry them out as the listener does.
    fn take(&mut self, actions: Vec<Action>) {
        let now = self.now;
        if std::env::var_os("CDN_FUZZ_DEBUG").is_some() {
            eprintln!("{:?} {actions:?}", self.session.state());
        }
        let addr = neighbor();
        let mut closed = false;
        for (i, a) in actions.iter().enumerate() {
            assert!(!closed, "action after Close: {actions:?}");
            match a {
                Action::Send(Message::Notification(n)) => {
                    assert_eq!(
                        actions.get(i + 1),
                        Some(&Action::Close(Reason::Sent(n.clone()))),
                        "a NOTIFICATION not followed by Close"
                    );
                }
                Action::Send(_) => {}
                Action::Close(_) => {
                    closed = true;
                    self.established = false;
                    self.rib.session_down(addr, now);
                    self.model.down(now);
                }
                Action::Established(peer) => {
                    assert!(!self.established, "Established twice");
                    assert_eq!(peer.asn, PEER_ASN);
                    assert!(peer.hold_time == 0 || (3..=90).contains(&peer.hold_time));
                    self.established = true;
                    self.rib.session_up(addr, now);
                    self.model.up(now);
                }
                Action::Learned {
                    announced,
                    withdrawn,
                    attrs,
                } => {
                    assert!(self.established, "routes reported outside a session");
                    for p in announced.iter().chain(withdrawn) {
                        assert_eq!(*p, p.trunc(), "host bits set in {p}");
                    }
                    self.rib.apply(addr, attrs, announced, withdrawn, now);
                    self.model.apply(announced, withdrawn, now);
                }
                Action::EndOfRib(f) => {
                    assert!(self.established, "End-of-RIB outside a session");
                    self.rib.end_of_rib(addr, *f, now);
                    self.model.end_of_rib(*f, now);
                }
            }
        }
        let state = self.session.state();
        assert_eq!(
            state == State::Established,
            self.established,
            "state {state:?}"
        );
        if closed {
            assert_eq!(state, State::Idle);
            assert_eq!(self.session.next_deadline(), None, "timers survive Close");
        }
        self.rib.expire(now);
        self.model.expire(now);
        let table: BTreeSet<IpNet> = self.rib.prefixes().copied().collect();
        assert_eq!(
            table,
            self.model.merged(),
            "learned prefixes differ from the rules"
        );
    }
}

fn check_update_round_trip(u: &Update, bytes: &[u8], four: bool) {
    let decoded = match codec::decode(bytes, four) {
        Ok(Message::Update(d)) => d,
        other => panic!("our own UPDATE {u:?} decodes as {other:?}"),
    };
    let sorted = |v: &[IpNet]| {
        let mut v = v.to_vec();
        v.sort();
        v
    };
    let empty = u.announced.is_empty() && u.withdrawn.is_empty();
    match u.end_of_rib {
        Some(f) => assert_eq!(decoded.end_of_rib, Some(f)),
        // An UPDATE with nothing in it is exactly the IPv4 End-of-RIB marker.
        None if empty => assert_eq!(decoded.end_of_rib, Some(Family::Ipv4)),
        None => {
            assert_eq!(decoded.end_of_rib, None, "{u:?}");
            assert_eq!(sorted(&decoded.announced), sorted(&u.announced), "{u:?}");
            assert_eq!(sorted(&decoded.withdrawn), sorted(&u.withdrawn), "{u:?}");
            assert_eq!(decoded.treated_as_withdraw, None);
        }
    }
}
