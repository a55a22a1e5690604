//! Session state machine tests: every state/event pair that matters, with an injected clock.

use super::*;

const HOLD: u16 = 90;

fn session() -> Session {
    Session::new(Settings {
        local_asn: 4_200_000_001,
        router_id: Ipv4Addr::new(198, 51, 100, 10),
        hold_time: HOLD,
        peer_asn: 64512,
    })
}

fn peer_open() -> Open {
    Open {
        version: 4,
        asn: 64512,
        hold_time: 180,
        router_id: Ipv4Addr::new(198, 51, 100, 1),
        four_octet_as: true,
        families: vec![Family::Ipv4, Family::Ipv6],
    }
}

fn rx(s: &mut Session, msg: Message, now: Instant) -> Vec<Action> {
    s.handle(Event::Received { msg, now })
}

fn notified(code: u8, subcode: u8) -> Vec<Action> {
    let n = Notification::new(code, subcode);
    vec![
        Action::Send(Message::Notification(n.clone())),
        Action::Close(Reason::Sent(n)),
    ]
}

/// A session taken to Established at `t`.
fn established(t: Instant) -> Session {
    let mut s = session();
    s.handle(Event::Connected { now: t });
    rx(&mut s, Message::Open(peer_open()), t);
    rx(&mut s, Message::Keepalive, t);
    assert_eq!(s.state(), State::Established);
    s
}

#[test]
fn good_handshake() {
    let t = Instant::now();
    let mut s = session();
    assert_eq!(s.next_deadline(), None);
    let a = s.handle(Event::Connected { now: t });
    let [Action::Send(Message::Open(o))] = &a[..] else {
        panic!("{a:?}")
    };
    assert_eq!((o.version, o.asn, o.hold_time), (4, 4_200_000_001, HOLD));
    assert!(o.four_octet_as);
    assert_eq!(o.families, [Family::Ipv4, Family::Ipv6]);
    assert_eq!(s.state(), State::OpenSent);
    assert_eq!(s.next_deadline(), Some(t + OPEN_WAIT));

    let a = rx(&mut s, Message::Open(peer_open()), t);
    assert_eq!(a, [Action::Send(Message::Keepalive)]);
    assert_eq!(s.state(), State::OpenConfirm);
    let peer = s.peer().unwrap();
    assert_eq!(peer.hold_time, HOLD, "the smaller hold time wins");
    // Keepalive at a third of the hold time comes first.
    assert_eq!(s.next_deadline(), Some(t + Duration::from_secs(30)));

    let a = rx(&mut s, Message::Keepalive, t);
    assert_eq!(a, [Action::Established(peer)]);
    assert_eq!(s.state(), State::Established);
}

#[test]
fn open_checks_send_the_rfc_notification() {
    let cases: [(fn(&mut Open), u8, u8); 6] = [
        (|o| o.version = 3, 2, 1),
        (|o| o.asn = 64513, 2, 2),
        (|o| o.hold_time = 1, 2, 6),
        (|o| o.hold_time = 2, 2, 6),
        (|o| o.router_id = Ipv4Addr::UNSPECIFIED, 2, 3),
        (|o| o.router_id = Ipv4Addr::BROADCAST, 2, 3),
    ];
    for (mutate, code, subcode) in cases {
        let t = Instant::now();
        let mut s = session();
        s.handle(Event::Connected { now: t });
        let mut o = peer_open();
        mutate(&mut o);
        let a = rx(&mut s, Message::Open(o.clone()), t);
        let Action::Send(Message::Notification(n)) = &a[0] else {
            panic!("{a:?}")
        };
        assert_eq!((n.code, n.subcode), (code, subcode), "{o:?}");
        assert!(matches!(a[1], Action::Close(Reason::Sent(_))));
        assert_eq!(a.len(), 2);
        assert_eq!(s.state(), State::Idle);
        assert_eq!(s.next_deadline(), None);
    }
    // The version NOTIFICATION names the version we speak.
    let mut s = session();
    s.handle(Event::Connected {
        now: Instant::now(),
    });
    let mut o = peer_open();
    o.version = 5;
    let a = rx(&mut s, Message::Open(o), Instant::now());
    assert_eq!(
        a[0],
        Action::Send(Message::Notification(Notification::with_data(
            2,
            1,
            vec![0, 4]
        )))
    );
}

#[test]
fn ibgp_peer_with_our_router_id_is_refused() {
    let t = Instant::now();
    let mut s = Session::new(Settings {
        local_asn: 64512,
        router_id: Ipv4Addr::new(198, 51, 100, 1),
        hold_time: HOLD,
        peer_asn: 64512,
    });
    s.handle(Event::Connected { now: t });
    assert_eq!(rx(&mut s, Message::Open(peer_open()), t), notified(2, 3));
}

#[test]
fn zero_hold_time_means_no_timers() {
    let t = Instant::now();
    let mut s = session();
    s.handle(Event::Connected { now: t });
    let mut o = peer_open();
    o.hold_time = 0;
    rx(&mut s, Message::Open(o), t);
    rx(&mut s, Message::Keepalive, t);
    assert_eq!(s.state(), State::Established);
    assert_eq!(s.next_deadline(), None);
    assert!(
        s.handle(Event::Tick {
            now: t + Duration::from_secs(3600)
        })
        .is_empty()
    );
}

#[test]
fn unexpected_messages_are_fsm_errors_with_the_state_subcode() {
    let t = Instant::now();
    let update = || Message::Update(codec::Update::default());
    // OpenSent: an UPDATE or KEEPALIVE before the OPEN.
    for m in [update(), Message::Keepalive] {
        let mut s = session();
        s.handle(Event::Connected { now: t });
        assert_eq!(rx(&mut s, m, t), notified(5, 1));
    }
    // OpenConfirm: an UPDATE before the KEEPALIVE.
    let mut s = session();
    s.handle(Event::Connected { now: t });
    rx(&mut s, Message::Open(peer_open()), t);
    assert_eq!(rx(&mut s, update(), t), notified(5, 2));
    // Established: a second OPEN.
    let mut s = established(t);
    assert_eq!(rx(&mut s, Message::Open(peer_open()), t), notified(5, 3));
}

#[test]
fn peer_notification_closes_without_answering() {
    let t = Instant::now();
    let n = Notification::new(6, 2);
    for mut s in [established(t), {
        let mut s = session();
        s.handle(Event::Connected { now: t });
        s
    }] {
        let a = rx(&mut s, Message::Notification(n.clone()), t);
        assert_eq!(a, [Action::Close(Reason::Received(n.clone()))]);
        assert_eq!(s.state(), State::Idle);
        // Nothing more happens on a closed session.
        assert!(rx(&mut s, Message::Keepalive, t).is_empty());
        assert!(s.handle(Event::Tick { now: t + OPEN_WAIT }).is_empty());
    }
}

#[test]
fn keepalives_on_schedule_and_hold_timer_restarts() {
    let t = Instant::now();
    let mut s = established(t);
    let secs = |n| t + Duration::from_secs(n);
    assert_eq!(s.next_deadline(), Some(secs(30)));
    assert!(s.handle(Event::Tick { now: secs(29) }).is_empty());
    assert_eq!(
        s.handle(Event::Tick { now: secs(30) }),
        [Action::Send(Message::Keepalive)]
    );
    assert_eq!(s.next_deadline(), Some(secs(60)));
    // The peer's keepalive at 50 s moves the hold deadline to 140 s.
    rx(&mut s, Message::Keepalive, secs(50));
    for k in [60, 90, 120] {
        let a = s.handle(Event::Tick { now: secs(k) });
        assert_eq!(a, [Action::Send(Message::Keepalive)], "at {k}s");
    }
    assert_eq!(s.next_deadline(), Some(secs(140)));
    assert_eq!(s.handle(Event::Tick { now: secs(140) }), notified(4, 0));
    assert_eq!(s.state(), State::Idle);
}

#[test]
fn hold_timer_expires_while_waiting_for_open() {
    let t = Instant::now();
    let mut s = session();
    s.handle(Event::Connected { now: t });
    assert!(
        s.handle(Event::Tick {
            now: t + OPEN_WAIT / 2
        })
        .is_empty()
    );
    assert_eq!(s.handle(Event::Tick { now: t + OPEN_WAIT }), notified(4, 0));
}

#[test]
fn updates_and_end_of_rib_for_both_families() {
    let t = Instant::now();
    let mut s = established(t);
    let p: IpNet = "10.0.0.0/8".parse().unwrap();
    let q: IpNet = "2001:db8::/32".parse().unwrap();
    let a = rx(
        &mut s,
        Message::Update(codec::Update {
            announced: vec![p],
            withdrawn: vec![q],
            ..Default::default()
        }),
        t + Duration::from_secs(80),
    );
    assert_eq!(
        a,
        [Action::Learned {
            announced: vec![p],
            withdrawn: vec![q],
            attrs: Default::default(),
        }]
    );
    // An UPDATE restarts the hold timer like a KEEPALIVE.
    assert!(
        s.handle(Event::Tick {
            now: t + Duration::from_secs(100)
        })
        .len()
            == 1
    );
    assert_eq!(s.state(), State::Established);
    for f in [Family::Ipv4, Family::Ipv6] {
        let eor = codec::Update {
            end_of_rib: Some(f),
            ..Default::default()
        };
        assert_eq!(rx(&mut s, Message::Update(eor), t), [Action::EndOfRib(f)]);
    }
    // A route refresh is ignored: we never advertised the capability.
    assert!(rx(&mut s, Message::RouteRefresh, t).is_empty());
}

#[test]
fn malformed_input_stop_and_connection_loss() {
    let t = Instant::now();
    let mut s = established(t);
    let a = s.handle(Event::Malformed {
        error: DecodeError::Length(5000),
        now: t,
    });
    let n = Notification::with_data(1, 2, 5000u16.to_be_bytes().to_vec());
    assert_eq!(a[0], Action::Send(Message::Notification(n)));
    let mut s = established(t);
    let cease = Notification::new(6, 2);
    let a = s.handle(Event::Stop {
        notification: cease.clone(),
        now: t,
    });
    assert_eq!(a[1], Action::Close(Reason::Sent(cease)));
    let mut s = established(t);
    assert_eq!(
        s.handle(Event::Closed { now: t }),
        [Action::Close(Reason::ConnectionLost)]
    );
    assert!(s.handle(Event::Closed { now: t }).is_empty());
}

#[test]
fn bytes_are_framed_decoded_and_handled() {
    let t = Instant::now();
    let mut s = session();
    s.handle(Event::Connected { now: t });
    let mut buf = codec::encode(&Message::Open(peer_open())).unwrap();
    buf.extend(codec::encode(&Message::Keepalive).unwrap());
    let update = codec::Update {
        announced: vec![
            "10.0.0.0/8".parse().unwrap(),
            "2001:db8::/32".parse().unwrap(),
        ],
        // Standard, large and well-known communities and a MED come through.
        attrs: control_client::wire::RouteAttrs {
            communities: vec!["64500:100".into(), "64500:1:2".into(), "65535:65281".into()],
            med: Some(30),
        },
        ..Default::default()
    };
    let whole = codec::encode_update(&update, 64512, true).unwrap();
    // Half an UPDATE waits in the buffer for the rest.
    buf.extend(&whole[..30]);
    let a = s.on_bytes(&mut buf, t);
    assert_eq!(a.len(), 2, "{a:?}");
    assert_eq!(s.state(), State::Established);
    assert_eq!(buf.len(), 30);
    buf.extend(&whole[30..]);
    let a = s.on_bytes(&mut buf, t);
    assert_eq!(
        a,
        [Action::Learned {
            announced: update.announced.clone(),
            withdrawn: vec![],
            attrs: update.attrs.clone(),
        }]
    );
    assert!(buf.is_empty());
    // A bad marker ends it with Message Header Error / Connection Not Synchronized.
    buf.extend([0u8; 19]);
    assert_eq!(s.on_bytes(&mut buf, t), notified(1, 1));
    assert!(buf.is_empty());
}
