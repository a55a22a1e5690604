//! The appliance's client for the control plane: typed calls with per-attempt
//! timeouts, retries with backoff and jitter, a circuit breaker, and
//! last-known-good answers kept on disk.

use std::path::{Path, PathBuf};
use std::sync::Mutex;
use std::time::{Duration, Instant};

use serde::Serialize;
use serde::de::DeserializeOwned;

use crate::retry::{Breaker, RetryPolicy};
use crate::wire::{
    API, EnrolRequest, EnrolResponse, ErrorBody, FillPlan, Heartbeat, HeartbeatResponse,
    KeySetWire, RegisterRequest, RegisterResponse,
};

/// Why a call did not produce an answer.
#[derive(Debug, thiserror::Error)]
pub enum ClientError {
    /// The control plane answered with an error status (not retried: it will
    /// answer the same again).
    #[error("control plane refused: {status} {code}: {message}")]
    Refused {
        status: u16,
        code: String,
        message: String,
        /// Items the refusal is about (e.g. renditions not in the catalog).
        details: Vec<String>,
    },
    /// Every attempt failed to get an answer (network, timeout, 5xx).
    #[error("control plane unreachable after {attempts} attempts: {last}")]
    Unreachable { attempts: u32, last: String },
    /// The breaker is open: recent calls all failed, so this one was not tried.
    #[error("control plane circuit open; not calling")]
    CircuitOpen,
    #[error("bad answer from control plane: {0}")]
    BadAnswer(String),
}

/// A configured client for one appliance.
pub struct ControlClient {
    /// The control plane's instances, in order of preference, each with a
    /// breaker of its own.
    endpoints: Vec<Endpoint>,
    appliance_id: String,
    credential: String,
    http: reqwest::Client,
    policy: RetryPolicy,
    cache_dir: PathBuf,
}

struct Endpoint {
    base: String,
    breaker: Mutex<Breaker>,
}

impl ControlClient {
    /// `bases` are the control plane's URLs (`http://steering:7000`), in
    /// order of preference: a call goes to the first whose breaker is closed
    /// and moves to the next when it gets no answer. `cache_dir` holds the
    /// last-known-good answers (created 0700, files 0600).
    pub fn new(
        bases: &[String],
        appliance_id: &str,
        credential: &str,
        cache_dir: &Path,
        ca_file: Option<&Path>,
        policy: RetryPolicy,
    ) -> Result<ControlClient, ClientError> {
        let http = http_client(policy.timeout, ca_file).map_err(ClientError::BadAnswer)?;
        if bases.is_empty() {
            return Err(ClientError::BadAnswer("no control-plane URL".into()));
        }
        Ok(ControlClient {
            endpoints: bases
                .iter()
                .map(|b| Endpoint {
                    base: b.trim_end_matches('/').to_owned(),
                    breaker: Mutex::new(Breaker::new(5, Duration::from_secs(15))),
                })
                .collect(),
            appliance_id: appliance_id.to_owned(),
            credential: credential.to_owned(),
            http,
            policy,
            cache_dir: cache_dir.to_owned(),
        })
    }

    pub fn appliance_id(&self) -> &str {
        &self.appliance_id
    }

    /// Present a one-time enrolment token (see `crate::enrol`); the answer
    /// names the id this appliance is registered under.
    pub async fn enrol(
        &self,
        token: &str,
        req: &EnrolRequest,
    ) -> Result<EnrolResponse, ClientError> {
        let path = format!("{API}/appliances/enroll");
        self.call_as(token, reqwest::Method::POST, &path, Some(req))
            .await
    }

    pub async fn register(&self, req: &RegisterRequest) -> Result<RegisterResponse, ClientError> {
        let path = format!("{API}/appliances/{}/register", self.appliance_id);
        self.call(reqwest::Method::POST, &path, Some(req)).await
    }

    pub async fn heartbeat(&self, hb: &Heartbeat) -> Result<HeartbeatResponse, ClientError> {
        let path = format!("{API}/appliances/{}/heartbeat", self.appliance_id);
        self.call(reqwest::Method::POST, &path, Some(hb)).await
    }

    /// Fetch the current key set; on success it is also written to the cache.
    pub async fn keys(&self) -> Result<KeySetWire, ClientError> {
        let keys: KeySetWire = self
            .call::<(), _>(reqwest::Method::GET, &format!("{API}/keys"), None)
            .await?;
        if let Err(e) = self.store("keys.json", &keys) {
            tracing::warn!(error = %e, "cannot cache keys on disk");
        }
        Ok(keys)
    }

    /// The last key set fetched successfully, from disk (survives restarts).
    pub fn cached_keys(&self) -> Option<KeySetWire> {
        Self::cached_keys_in(&self.cache_dir)
    }

    /// The cached key set in `cache_dir`, without a client (for use at start,
    /// before anything is served).
    pub fn cached_keys_in(cache_dir: &Path) -> Option<KeySetWire> {
        load(cache_dir, "keys.json")
    }

    /// Fetch this appliance's fill plan; on success it is also written to the
    /// cache, so filling can go on from it while the control plane is down.
    pub async fn fill_plan(&self) -> Result<FillPlan, ClientError> {
        let path = format!("{API}/appliances/{}/fill-plan", self.appliance_id);
        let plan: FillPlan = self
            .call::<(), _>(reqwest::Method::GET, &path, None)
            .await?;
        if plan.appliance != self.appliance_id {
            return Err(ClientError::BadAnswer(format!(
                "fill plan is for {:?}, not this appliance",
                plan.appliance
            )));
        }
        if let Err(e) = self.store(FILL_PLAN, &plan) {
            tracing::warn!(error = %e, "cannot cache the fill plan on disk");
        }
        Ok(plan)
    }

    /// The last fill plan fetched successfully, from disk (survives restarts).
    /// Its source URLs stop working at `expires`; its items stay good.
    pub fn cached_fill_plan(&self) -> Option<FillPlan> {
        Self::cached_fill_plan_in(&self.cache_dir)
    }

    /// The cached fill plan in `cache_dir`, without a client.
    pub fn cached_fill_plan_in(cache_dir: &Path) -> Option<FillPlan> {
        load(cache_dir, FILL_PLAN)
    }

    /// One call: in rounds (up to `policy.attempts`, with backoff between
    /// them), each trying the endpoints in order whose breakers allow it,
    /// until one answers. An answer (even a refusal) ends it; no answer from
    /// an endpoint counts against its breaker, so a dead instance is soon
    /// skipped without a try, and tried again (first) once it cools down.
    async fn call<B: Serialize, T: DeserializeOwned>(
        &self,
        method: reqwest::Method,
        path: &str,
        body: Option<&B>,
    ) -> Result<T, ClientError> {
        let bearer = format!("{}:{}", self.appliance_id, self.credential);
        self.call_as(&bearer, method, path, body).await
    }

    /// `call`, with `Authorization: Bearer <bearer>`.
    async fn call_as<B: Serialize, T: DeserializeOwned>(
        &self,
        bearer: &str,
        method: reqwest::Method,
        path: &str,
        body: Option<&B>,
    ) -> Result<T, ClientError> {
        let mut last = String::new();
        let mut tried = 0;
        for round in 0..self.policy.attempts.max(1) {
            if round > 0 {
                tokio::time::sleep(self.policy.backoff(round, jitter())).await;
            }
            for e in &self.endpoints {
                if !lock(&e.breaker).allow(Instant::now()) {
                    continue;
                }
                tried += 1;
                match self.try_once(e, bearer, &method, path, body).await {
                    Ok(answer) => return answer,
                    Err(why) => {
                        lock(&e.breaker).record(Instant::now(), false);
                        last = format!("{}: {why}", e.base);
                    }
                }
            }
            if tried == 0 {
                return Err(ClientError::CircuitOpen);
            }
        }
        Err(ClientError::Unreachable {
            attempts: tried,
            last,
        })
    }

    /// One request to one endpoint: `Ok` with the call's outcome when it
    /// answered (success or refusal), `Err` with why when it did not.
    async fn try_once<B: Serialize, T: DeserializeOwned>(
        &self,
        e: &Endpoint,
        bearer: &str,
        method: &reqwest::Method,
        path: &str,
        body: Option<&B>,
    ) -> Result<Result<T, ClientError>, String> {
        let url = format!("{}{path}", e.base);
        let mut req = self.http.request(method.clone(), &url).bearer_auth(bearer);
        if let Some(b) = body {
            req = req.json(b);
        }
        match req.send().await {
            Ok(resp) if resp.status().is_success() => {
                lock(&e.breaker).record(Instant::now(), true);
                Ok(resp
                    .json::<T>()
                    .await
                    .map_err(|e| ClientError::BadAnswer(e.to_string())))
            }
            Ok(resp) if resp.status().is_client_error() && resp.status().as_u16() != 429 => {
                // The control plane is up and said no: not a reason to open
                // the breaker, nor to ask another instance.
                lock(&e.breaker).record(Instant::now(), true);
                let status = resp.status().as_u16();
                let err: ErrorBody = resp.json().await.unwrap_or(ErrorBody {
                    code: "unknown".into(),
                    message: "no error body".into(),
                    details: Vec::new(),
                });
                Ok(Err(ClientError::Refused {
                    status,
                    code: err.code,
                    message: err.message,
                    details: err.details,
                }))
            }
            Ok(resp) => Err(format!("HTTP {}", resp.status())),
            Err(e) => Err(e.to_string()),
        }
    }

    /// Write `value` as `name` in the cache directory (see `write_private`).
    fn store<T: Serialize>(&self, name: &str, value: &T) -> std::io::Result<()> {
        let bytes = serde_json::to_vec(value).map_err(std::io::Error::other)?;
        write_private(&self.cache_dir, name, &bytes)
    }
}

/// Write `bytes` as `dir/name`, creating `dir` (0700): private permissions
/// (0600), written to a temporary file, fsynced and renamed, so a crash
/// leaves the old content or the new, never half of one.
pub(crate) fn write_private(dir: &Path, name: &str, bytes: &[u8]) -> std::io::Result<()> {
    use std::io::Write;
    use std::os::unix::fs::{DirBuilderExt, OpenOptionsExt};
    std::fs::DirBuilder::new()
        .recursive(true)
        .mode(0o700)
        .create(dir)?;
    let tmp = dir.join(format!(".{name}.tmp"));
    let mut f = std::fs::OpenOptions::new()
        .write(true)
        .create(true)
        .truncate(true)
        .mode(0o600)
        .open(&tmp)?;
    f.write_all(bytes)?;
    f.sync_all()?;
    std::fs::rename(&tmp, dir.join(name))?;
    // The rename itself, durable: a credential must not vanish in a crash.
    std::fs::File::open(dir)?.sync_all()
}

fn lock(b: &Mutex<Breaker>) -> std::sync::MutexGuard<'_, Breaker> {
    b.lock().unwrap_or_else(|p| p.into_inner())
}

/// The cached fill plan's file name in the cache directory.
const FILL_PLAN: &str = "fill-plan.json";

/// A cached answer; none when absent or unreadable (a torn or foreign file is
/// as good as no answer).
fn load<T: DeserializeOwned>(cache_dir: &Path, name: &str) -> Option<T> {
    let bytes = std::fs::read(cache_dir.join(name)).ok()?;
    serde_json::from_slice(&bytes).ok()
}

/// Where Debian (and most distributions) keep the system's trusted CAs.
const SYSTEM_CA_BUNDLES: &[&str] = &[
    "/etc/ssl/certs/ca-certificates.crt",
    "/etc/pki/tls/certs/ca-bundle.crt",
];

/// An HTTP client for the control plane (and for polling appliances): plain HTTP,
/// or HTTPS with rustls and *ring* (the workspace's one crypto provider),
/// trusting `ca_file` if given, else the system's CA bundle.
pub fn http_client(
    timeout: std::time::Duration,
    ca_file: Option<&Path>,
) -> Result<reqwest::Client, String> {
    reqwest::Client::builder()
        .connect_timeout(timeout)
        .timeout(timeout)
        .tls_backend_preconfigured(tls_config(ca_file)?)
        .build()
        .map_err(|e| format!("cannot build HTTP client: {e}"))
}

/// A credential or bearer token from `path`: one line of visible ASCII, in
/// a file readable by its owner only. The error is the reason, without the
/// path (callers name the file or the key); it never quotes the file.
pub fn read_token(path: &Path) -> Result<String, String> {
    use std::os::unix::fs::PermissionsExt;
    let meta = std::fs::metadata(path).map_err(|e| e.to_string())?;
    let mode = meta.permissions().mode() & 0o777;
    if mode & 0o077 != 0 {
        return Err(format!("readable by others (mode {mode:o}); chmod 600 it"));
    }
    let text = std::fs::read_to_string(path).map_err(|e| e.to_string())?;
    let token = text.trim();
    if token.is_empty() || !token.bytes().all(|b| b.is_ascii_graphic()) {
        return Err("expected one line of visible ASCII".into());
    }
    Ok(token.to_owned())
}

/// A client for an appliance's admin listener: as [`http_client`], sending
/// `Authorization: Bearer <token>` (read from `token_file`) with every
/// request when there is one. The header is marked sensitive, so it is never
/// shown in debug output.
pub fn admin_client(
    timeout: std::time::Duration,
    ca_file: Option<&Path>,
    token_file: Option<&Path>,
) -> Result<reqwest::Client, String> {
    let mut headers = reqwest::header::HeaderMap::new();
    if let Some(path) = token_file {
        let token = read_token(path).map_err(|e| format!("{}: {e}", path.display()))?;
        let mut v = reqwest::header::HeaderValue::from_str(&format!("Bearer {token}"))
            .map_err(|_| format!("{}: not a usable token", path.display()))?;
        v.set_sensitive(true);
        headers.insert(reqwest::header::AUTHORIZATION, v);
    }
    reqwest::Client::builder()
        .connect_timeout(timeout)
        .timeout(timeout)
        .default_headers(headers)
        .tls_backend_preconfigured(tls_config(ca_file)?)
        .build()
        .map_err(|e| format!("cannot build HTTP client: {e}"))
}

/// The TLS client settings every control-plane and transfer client uses:
/// `ca_file`'s certificates, or the system's roots; HTTP/1.1 by ALPN.
pub fn tls_client_config(ca_file: Option<&Path>) -> Result<rustls::ClientConfig, String> {
    tls_config(ca_file)
}

fn tls_config(ca_file: Option<&Path>) -> Result<rustls::ClientConfig, String> {
    use rustls_pki_types::CertificateDer;
    use rustls_pki_types::pem::PemObject;
    let mut roots = rustls::RootCertStore::empty();
    let bundles: Vec<&Path> = match ca_file {
        Some(f) => vec![f],
        None => SYSTEM_CA_BUNDLES
            .iter()
            .map(Path::new)
            .filter(|p| p.exists())
            .collect(),
    };
    for b in bundles {
        let certs = CertificateDer::pem_file_iter(b)
            .map_err(|e| format!("cannot read CA file {}: {e}", b.display()))?;
        for c in certs {
            let c = c.map_err(|e| format!("CA file {}: {e}", b.display()))?;
            // Skip certificates the parser cannot use instead of failing on one odd entry.
            let _ = roots.add(c);
        }
    }
    if ca_file.is_some() && roots.is_empty() {
        return Err("CA file holds no usable certificate".into());
    }
    let provider = std::sync::Arc::new(rustls::crypto::ring::default_provider());
    let mut tls = rustls::ClientConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .map_err(|e| e.to_string())?
        .with_root_certificates(roots)
        .with_no_client_auth();
    tls.alpn_protocols = vec![b"http/1.1".to_vec()];
    Ok(tls)
}

/// A uniform number in [0, 1) for jitter; quality does not matter, spread does.
fn jitter() -> f64 {
    use std::hash::{BuildHasher, Hasher};
    let mut h = std::collections::hash_map::RandomState::new().build_hasher();
    h.write_u64(
        std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0, |d| d.as_nanos() as u64),
    );
    (h.finish() >> 11) as f64 / (1u64 << 53) as f64
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn http_client_trusts_a_given_ca_and_refuses_a_file_without_one() {
        let ca = Path::new(env!("CARGO_MANIFEST_DIR")).join("../bench/tests/data/ca.pem");
        http_client(std::time::Duration::from_secs(1), Some(&ca)).unwrap();
        let dir = std::env::temp_dir().join(format!("cc-test-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let not_ca = dir.join("empty.pem");
        std::fs::write(&not_ca, "no certificates here\n").unwrap();
        assert!(http_client(std::time::Duration::from_secs(1), Some(&not_ca)).is_err());
        assert!(
            http_client(
                std::time::Duration::from_secs(1),
                Some(&dir.join("missing.pem"))
            )
            .is_err()
        );
        // Without a CA file the system bundle is used (if the machine has one).
        http_client(std::time::Duration::from_secs(1), None).unwrap();
        let _ = std::fs::remove_dir_all(dir);
    }

    /// A control plane that answers each connection with the next body (200,
    /// JSON), then stops listening.
    async fn canned(bodies: Vec<String>) -> String {
        use tokio::io::{AsyncReadExt, AsyncWriteExt};
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let url = format!("http://{}", listener.local_addr().unwrap());
        tokio::spawn(async move {
            for body in bodies {
                let (mut conn, _) = listener.accept().await.unwrap();
                let mut head = Vec::new();
                let mut buf = [0u8; 1024];
                while !head.ends_with(b"\r\n\r\n") {
                    let n = conn.read(&mut buf).await.unwrap();
                    if n == 0 {
                        break;
                    }
                    head.extend_from_slice(&buf[..n]);
                }
                let resp = format!(
                    "HTTP/1.1 200 OK\r\ncontent-type: application/json\r\ncontent-length: {}\r\nconnection: close\r\n\r\n{body}",
                    body.len()
                );
                conn.write_all(resp.as_bytes()).await.unwrap();
            }
        });
        url
    }

    fn plan_for(appliance: &str, version: u64) -> FillPlan {
        use crate::wire::{FillItem, FillObject, FillSource, FillWindow};
        FillPlan {
            appliance: appliance.into(),
            version,
            generated_at: 1_800_000_000,
            expires: 1_800_086_400,
            window: FillWindow {
                start: "02:00".into(),
                end: "06:00".into(),
                utc_offset_minutes: 60,
            },
            budget_bytes: 900,
            items: vec![FillItem {
                rendition: "titles/t1/v1".into(),
                title: "t1".into(),
                score: 1.5,
                urgent: true,
                not_before: None,
                bytes: 3,
                objects: vec![FillObject {
                    key: "titles/t1/v1/seg1.m4s".into(),
                    size: 3,
                    sha256: "ab".repeat(32),
                }],
                sources: vec![FillSource {
                    id: "origin".into(),
                    kind: "origin".into(),
                    base_url: "http://origin/t/tok/".into(),
                }],
            }],
        }
    }

    #[tokio::test]
    async fn fill_plan_is_cached_atomically_and_served_from_cache_when_down() {
        use std::os::unix::fs::PermissionsExt;
        let dir = tempfile_dir("cc-fill");
        let good = plan_for("a1", 4);
        let bodies = vec![
            serde_json::to_string(&good).unwrap(),
            serde_json::to_string(&plan_for("someone-else", 5)).unwrap(),
        ];
        let url = canned(bodies).await;
        let policy = RetryPolicy {
            attempts: 1,
            base: std::time::Duration::from_millis(1),
            max: std::time::Duration::from_millis(2),
            timeout: std::time::Duration::from_secs(5),
        };
        let c =
            ControlClient::new(&[url], "a1", "credential-xxxxxxxx", &dir, None, policy).unwrap();
        assert!(c.cached_fill_plan().is_none(), "nothing cached yet");
        assert_eq!(c.fill_plan().await.unwrap(), good);
        assert_eq!(c.cached_fill_plan(), Some(good.clone()));
        assert_eq!(ControlClient::cached_fill_plan_in(&dir), Some(good.clone()));
        let mode = std::fs::metadata(dir.join("fill-plan.json"))
            .unwrap()
            .permissions()
            .mode();
        assert_eq!(mode & 0o777, 0o600);
        assert!(
            !dir.join(".fill-plan.json.tmp").exists(),
            "no temporary left behind"
        );
        // A plan for another appliance is refused and does not replace the cache.
        assert!(matches!(
            c.fill_plan().await,
            Err(ClientError::BadAnswer(_))
        ));
        assert_eq!(c.cached_fill_plan(), Some(good.clone()));
        // Control plane gone: the call fails, the last good plan is still there.
        assert!(matches!(
            c.fill_plan().await,
            Err(ClientError::Unreachable { .. })
        ));
        assert_eq!(c.cached_fill_plan(), Some(good));
        // A torn file reads as no plan rather than a wrong one.
        std::fs::write(
            dir.join("fill-plan.json"),
            b"{\"appliance\": \"a1\", \"vers",
        )
        .unwrap();
        assert!(ControlClient::cached_fill_plan_in(&dir).is_none());
        let _ = std::fs::remove_dir_all(dir);
    }

    /// A fresh directory of its own under the system temp dir.
    fn tempfile_dir(prefix: &str) -> PathBuf {
        let dir = std::env::temp_dir().join(format!(
            "{prefix}-{}-{}",
            std::process::id(),
            jitter().to_bits()
        ));
        let _ = std::fs::remove_dir_all(&dir);
        dir
    }

    #[tokio::test]
    async fn unreachable_control_plane_fails_fast_then_opens_the_breaker() {
        let dir = std::env::temp_dir().join(format!("cc-breaker-{}", std::process::id()));
        let policy = RetryPolicy {
            attempts: 2,
            base: std::time::Duration::from_millis(1),
            max: std::time::Duration::from_millis(2),
            timeout: std::time::Duration::from_millis(200),
        };
        // Port 1 on loopback: connection refused at once.
        let c = ControlClient::new(
            &["http://127.0.0.1:1".into()],
            "a",
            "credential-xxxxxxxx",
            &dir,
            None,
            policy,
        )
        .unwrap();
        // Five tries without an answer open the breaker: three calls of two.
        for _ in 0..2 {
            assert!(matches!(
                c.keys().await,
                Err(ClientError::Unreachable { attempts: 2, .. })
            ));
        }
        assert!(matches!(
            c.keys().await,
            Err(ClientError::Unreachable { attempts: 1, .. })
        ));
        assert!(matches!(c.keys().await, Err(ClientError::CircuitOpen)));
        assert!(c.cached_keys().is_none());
    }

    #[tokio::test]
    async fn a_dead_instance_is_skipped_for_the_next_one() {
        let dir = tempfile_dir("cc-failover");
        let keys = KeySetWire {
            version: 7,
            keys: Vec::new(),
        };
        let body = serde_json::to_string(&keys).unwrap();
        let live = canned(vec![body; 8]).await;
        let policy = RetryPolicy {
            attempts: 3,
            base: std::time::Duration::from_millis(1),
            max: std::time::Duration::from_millis(2),
            timeout: std::time::Duration::from_millis(500),
        };
        // The preferred instance is dead (connection refused); the second answers.
        let c = ControlClient::new(
            &["http://127.0.0.1:1".into(), live],
            "a",
            "credential-xxxxxxxx",
            &dir,
            None,
            policy,
        )
        .unwrap();
        for _ in 0..8 {
            assert_eq!(c.keys().await.unwrap().version, 7);
        }
        // After five misses the dead one is not even tried.
        assert!(matches!(
            lock(&c.endpoints[0].breaker).state(),
            crate::retry::BreakerState::Open { .. }
        ));
        let _ = std::fs::remove_dir_all(dir);
    }
}
