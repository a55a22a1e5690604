//! URL signing, shared by both halves: the fleet's key schedule publishes the
//! keys here (and to appliances); plays, licence URLs and fill plans sign with
//! the newest usable one, and licence requests are verified against them.

use std::net::IpAddr;
use std::sync::RwLock;

use control_client::wire::KeySetWire;

#[derive(Debug, thiserror::Error)]
#[error("no usable signing key: {0}")]
pub struct NoSigningKey(String);

/// The keys in force, as appliances receive them.
pub struct KeyRing {
    held: RwLock<Held>,
}

#[derive(Clone)]
struct Held {
    wire: KeySetWire,
    /// When the newest key was created (unix seconds), for `/health`.
    newest_created: Option<u64>,
}

impl KeyRing {
    pub fn new(wire: KeySetWire) -> KeyRing {
        KeyRing {
            held: RwLock::new(Held {
                wire,
                newest_created: None,
            }),
        }
    }

    /// Put the schedule's current set in force.
    pub fn set(&self, wire: KeySetWire, newest_created: Option<u64>) {
        *self.held.write().unwrap_or_else(|p| p.into_inner()) = Held {
            wire,
            newest_created,
        };
    }

    fn held(&self) -> Held {
        self.held.read().unwrap_or_else(|p| p.into_inner()).clone()
    }

    pub fn wire(&self) -> KeySetWire {
        self.held().wire
    }

    pub fn version(&self) -> u64 {
        self.held
            .read()
            .unwrap_or_else(|p| p.into_inner())
            .wire
            .version
    }

    /// When the newest key was created, if the schedule has made one.
    pub fn newest_created(&self) -> Option<u64> {
        self.held
            .read()
            .unwrap_or_else(|p| p.into_inner())
            .newest_created
    }

    fn keyset(&self) -> Result<urlsign::KeySet, NoSigningKey> {
        self.held
            .read()
            .unwrap_or_else(|p| p.into_inner())
            .wire
            .to_keyset()
            .map_err(NoSigningKey)
    }

    /// A urlsign token for `prefix`, signed with the newest usable key.
    pub fn sign(
        &self,
        prefix: &str,
        expires: u64,
        client: Option<IpAddr>,
        now: u64,
    ) -> Result<String, NoSigningKey> {
        let keys = self.keyset()?;
        let key = keys
            .signing_key(now)
            .ok_or_else(|| NoSigningKey("no key is valid now".into()))?;
        // Canonical first: behind a dual-stack listener an IPv4 viewer arrives as
        // ::ffff:a.b.c.d, and a /64 around that would bind the token to every
        // IPv4 client instead of this one.
        let client = client
            .map(|ip| ip.to_canonical())
            .and_then(|ip| urlsign::ClientPrefix::new(ip, if ip.is_ipv4() { 32 } else { 64 }));
        let claims = urlsign::Claims {
            expires,
            path_prefix: prefix,
            client,
        };
        urlsign::sign(key, &claims).map_err(|e| NoSigningKey(e.to_owned()))
    }

    /// Check a token this service signed for `path` (30 s of clock leeway).
    pub fn verify(
        &self,
        token: &str,
        path: &str,
        client: IpAddr,
        now: u64,
    ) -> Result<Result<(), urlsign::Reject>, NoSigningKey> {
        let keys = self.keyset()?;
        Ok(urlsign::verify(&keys, token, path, client, now, 30))
    }
}
