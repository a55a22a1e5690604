//! One BGP session with one neighbour, as a pure state machine: events and
//! `now` in, actions out, `next_deadline` for the caller's timer. Passive
//! only (RFC 4271 §8 with the Connect/Active states collapsed, since we never
//! dial out): the connection is already accepted when the session starts.

use std::net::Ipv4Addr;
use std::time::{Duration, Instant};

use ipnet::IpNet;

use super::Family;
use super::codec::{self, DecodeError, Message, Notification, Open, code};

/// How long to wait for the peer's OPEN (RFC 4271 §8.2.2 suggests 4 minutes).
pub const OPEN_WAIT: Duration = Duration::from_secs(240);

/// What this side of one session is configured with.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Settings {
    pub local_asn: u32,
    pub router_id: Ipv4Addr,
    /// Proposed hold time in seconds: 0 (no keepalives) or at least 3.
    pub hold_time: u16,
    /// The AS the neighbour must open with.
    pub peer_asn: u32,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum State {
    Idle,
    OpenSent,
    OpenConfirm,
    Established,
}

impl State {
    pub fn as_str(self) -> &'static str {
        match self {
            State::Idle => "idle",
            State::OpenSent => "open_sent",
            State::OpenConfirm => "open_confirm",
            State::Established => "established",
        }
    }
}

#[derive(Debug)]
pub enum Event {
    /// The TCP connection from the neighbour was accepted.
    Connected {
        now: Instant,
    },
    Received {
        msg: Message,
        now: Instant,
    },
    /// Bytes that are not a valid message.
    Malformed {
        error: DecodeError,
        now: Instant,
    },
    /// A timer may have run out (see `next_deadline`).
    Tick {
        now: Instant,
    },
    /// Close from our side with this NOTIFICATION (a Cease: shutdown, collision).
    Stop {
        notification: Notification,
        now: Instant,
    },
    /// The connection is gone (EOF, reset, write failure).
    Closed {
        now: Instant,
    },
}

/// Why a session ended.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Reason {
    Sent(Notification),
    Received(Notification),
    ConnectionLost,
}

impl std::fmt::Display for Reason {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Reason::Sent(n) => write!(f, "sent NOTIFICATION {n}"),
            Reason::Received(n) => write!(f, "received NOTIFICATION {n}"),
            Reason::ConnectionLost => f.write_str("connection lost"),
        }
    }
}

/// What the peer told us in its OPEN, once accepted.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Peer {
    pub asn: u32,
    pub router_id: Ipv4Addr,
    /// Negotiated hold time in seconds (0: none).
    pub hold_time: u16,
    pub four_octet_as: bool,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Action {
    Send(Message),
    /// Close the connection; the session is over.
    Close(Reason),
    /// The session reached Established.
    Established(Peer),
    /// One UPDATE's unicast prefixes, the announced ones with its
    /// communities and MED.
    Learned {
        announced: Vec<IpNet>,
        withdrawn: Vec<IpNet>,
        attrs: control_client::wire::RouteAttrs,
    },
    EndOfRib(Family),
}

#[derive(Debug)]
pub struct Session {
    settings: Settings,
    state: State,
    peer: Option<Peer>,
    hold_deadline: Option<Instant>,
    keepalive_deadline: Option<Instant>,
}

impl Session {
    pub fn new(settings: Settings) -> Session {
        Session {
            settings,
            state: State::Idle,
            peer: None,
            hold_deadline: None,
            keepalive_deadline: None,
        }
    }

    pub fn state(&self) -> State {
        self.state
    }

    /// The accepted peer OPEN, from OpenConfirm on.
    pub fn peer(&self) -> Option<Peer> {
        self.peer
    }

    /// When to send `Tick` next.
    pub fn next_deadline(&self) -> Option<Instant> {
        match (self.hold_deadline, self.keepalive_deadline) {
            (Some(a), Some(b)) => Some(a.min(b)),
            (a, b) => a.or(b),
        }
    }

    /// Frame, decode and handle every whole message at the front of `buf`,
    /// draining what was consumed. Stops at the first message that ends the session.
    pub fn on_bytes(&mut self, buf: &mut Vec<u8>, now: Instant) -> Vec<Action> {
        let mut out = Vec::new();
        while self.state != State::Idle {
            match codec::frame(buf) {
                Ok(None) => break,
                Ok(Some(n)) => {
                    let four = self.peer.is_some_and(|p| p.four_octet_as);
                    let event = match codec::decode(&buf[..n], four) {
                        Ok(msg) => Event::Received { msg, now },
                        Err(error) => Event::Malformed { error, now },
                    };
                    buf.drain(..n);
                    out.extend(self.handle(event));
                }
                Err(error) => {
                    buf.clear();
                    out.extend(self.handle(Event::Malformed { error, now }));
                }
            }
        }
        out
    }

    pub fn handle(&mut self, event: Event) -> Vec<Action> {
        match (self.state, event) {
            (State::Idle, Event::Connected { now }) => {
                self.state = State::OpenSent;
                self.hold_deadline = Some(now + OPEN_WAIT);
                vec![Action::Send(Message::Open(Open {
                    version: 4,
                    asn: self.settings.local_asn,
                    hold_time: self.settings.hold_time,
                    router_id: self.settings.router_id,
                    four_octet_as: true,
                    families: vec![Family::Ipv4, Family::Ipv6],
                }))]
            }
            (State::Idle, _) => Vec::new(),
            (_, Event::Connected { .. }) => Vec::new(),
            (_, Event::Closed { .. }) => {
                self.reset();
                vec![Action::Close(Reason::ConnectionLost)]
            }
            (_, Event::Stop { notification, .. }) => self.fail(notification),
            (_, Event::Malformed { error, .. }) => self.fail(error.notification()),
            (_, Event::Tick { now }) => self.tick(now),
            (_, Event::Received { msg, now }) => self.received(msg, now),
        }
    }

    fn received(&mut self, msg: Message, now: Instant) -> Vec<Action> {
        // RFC 6608 subcodes: unexpected message in OpenSent, OpenConfirm, Established.
        let unexpected = match self.state {
            State::OpenSent => 1,
            State::OpenConfirm => 2,
            _ => 3,
        };
        match (self.state, msg) {
            (_, Message::Notification(n)) => {
                self.reset();
                vec![Action::Close(Reason::Received(n))]
            }
            (State::OpenSent, Message::Open(open)) => self.open(open, now),
            (State::OpenConfirm, Message::Keepalive) => {
                self.state = State::Established;
                self.restart_hold(now);
                self.peer.map(Action::Established).into_iter().collect()
            }
            (State::Established, Message::Keepalive | Message::RouteRefresh) => {
                self.restart_hold(now);
                Vec::new()
            }
            (State::Established, Message::Update(u)) => {
                self.restart_hold(now);
                match u.end_of_rib {
                    Some(f) => vec![Action::EndOfRib(f)],
                    None => vec![Action::Learned {
                        announced: u.announced,
                        withdrawn: u.withdrawn,
                        attrs: u.attrs,
                    }],
                }
            }
            _ => self.fail(Notification::new(code::FSM, unexpected)),
        }
    }

    /// Check the peer's OPEN (RFC 4271 §6.2, RFC 6793) and negotiate.
    fn open(&mut self, open: Open, now: Instant) -> Vec<Action> {
        let s = &self.settings;
        if open.version != 4 {
            // Data: the largest version we support.
            return self.fail(Notification::with_data(code::OPEN, 1, vec![0, 4]));
        }
        if open.asn != s.peer_asn {
            return self.fail(Notification::new(code::OPEN, 2));
        }
        if open.hold_time == 1 || open.hold_time == 2 {
            return self.fail(Notification::new(code::OPEN, 6));
        }
        let id = open.router_id;
        let same_as_ours_in_ibgp = id == s.router_id && open.asn == s.local_asn;
        if id.is_unspecified() || id.is_broadcast() || same_as_ours_in_ibgp {
            return self.fail(Notification::new(code::OPEN, 3));
        }
        let hold_time = s.hold_time.min(open.hold_time);
        self.peer = Some(Peer {
            asn: open.asn,
            router_id: id,
            hold_time,
            four_octet_as: open.four_octet_as,
        });
        self.state = State::OpenConfirm;
        self.restart_hold(now);
        self.keepalive_deadline = self.keepalive_interval().map(|i| now + i);
        vec![Action::Send(Message::Keepalive)]
    }

    fn tick(&mut self, now: Instant) -> Vec<Action> {
        if self.hold_deadline.is_some_and(|t| t <= now) {
            return self.fail(Notification::new(code::HOLD_TIMER_EXPIRED, 0));
        }
        match (self.keepalive_deadline, self.keepalive_interval()) {
            (Some(t), Some(i)) if t <= now => {
                self.keepalive_deadline = Some(now + i);
                vec![Action::Send(Message::Keepalive)]
            }
            _ => Vec::new(),
        }
    }

    /// A third of the negotiated hold time (RFC 4271 §10); none when it is 0.
    fn keepalive_interval(&self) -> Option<Duration> {
        let hold = self.peer?.hold_time;
        (hold > 0).then(|| Duration::from_secs(u64::from(hold)) / 3)
    }

    fn restart_hold(&mut self, now: Instant) {
        self.hold_deadline = match self.peer {
            Some(p) if p.hold_time > 0 => Some(now + Duration::from_secs(u64::from(p.hold_time))),
            _ => None,
        };
    }

    /// Send a NOTIFICATION and close.
    fn fail(&mut self, n: Notification) -> Vec<Action> {
        self.reset();
        vec![
            Action::Send(Message::Notification(n.clone())),
            Action::Close(Reason::Sent(n)),
        ]
    }

    fn reset(&mut self) {
        self.state = State::Idle;
        self.hold_deadline = None;
        self.keepalive_deadline = None;
    }
}

#[cfg(test)]
#[path = "fsm_tests.rs"]
mod tests;
