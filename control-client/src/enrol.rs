//! The appliance's side of enrolment: which credential it presents, and how
//! it gets one from a one-time enrolment token.
//!
//! The appliance chooses its credential itself and keeps it on disk *before*
//! presenting the token (as `enrolment-credential`), sending steering only
//! its SHA-256. If the answer is lost or the process dies, the next attempt
//! presents the same token with the same credential and steering answers it
//! again; once steering has answered, the file is renamed to `credential`,
//! which later starts (and the local fill-agent, `credential_file`) use.

use std::path::{Path, PathBuf};
use std::time::Duration;

use crate::client::write_private;
use crate::wire::{ApplianceInfo, EnrolRequest};
use crate::{ClientError, ControlClient, read_token};

/// The enrolled credential's file name in the cache directory.
pub const CREDENTIAL_FILE: &str = "credential";
/// The credential chosen for an enrolment that has not been answered yet.
const PENDING_FILE: &str = "enrolment-credential";

/// Where this appliance's enrolled credential is kept.
pub fn credential_path(cache_dir: &Path) -> PathBuf {
    cache_dir.join(CREDENTIAL_FILE)
}

/// The credential an earlier enrolment saved, if there is one.
pub fn saved_credential(cache_dir: &Path) -> Result<Option<String>, String> {
    let path = credential_path(cache_dir);
    match std::fs::symlink_metadata(&path) {
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(None),
        Err(e) => Err(format!("{}: {e}", path.display())),
        Ok(_) => read_token(&path)
            .map(Some)
            .map_err(|e| format!("{}: {e}", path.display())),
    }
}

/// The credential of the enrolment under way: the one chosen before (kept
/// on disk), else a new one, written to disk before it is used.
fn pending_credential(cache_dir: &Path) -> Result<String, String> {
    let path = cache_dir.join(PENDING_FILE);
    if path.exists() {
        return read_token(&path).map_err(|e| format!("{}: {e}", path.display()));
    }
    let credential = urlsign::generate_secret();
    write_private(
        cache_dir,
        PENDING_FILE,
        format!("{credential}\n").as_bytes(),
    )
    .map_err(|e| {
        format!(
            "cannot keep the new credential in {}: {e}",
            cache_dir.display()
        )
    })?;
    Ok(credential)
}

/// Lowercase hex SHA-256, as steering stores credentials.
pub fn sha256_hex(s: &str) -> String {
    hex::encode(ring::digest::digest(&ring::digest::SHA256, s.as_bytes()))
}

/// Why an enrolment did not produce a credential.
#[derive(Debug, thiserror::Error)]
pub enum EnrolError {
    /// Steering said no (the token is unknown, expired, used, or for another
    /// appliance or place): asking again will not help.
    #[error("enrolment refused: {0}")]
    Refused(ClientError),
    /// The credential could not be kept on disk.
    #[error("{0}")]
    Disk(String),
}

/// Enrol with `token` as `id`: retries while steering cannot be reached
/// (every `retry_every`, up to `give_up_after`, then the last error), and
/// answers the credential to present from now on, saved in `cache_dir`.
pub async fn enrol(
    client: &ControlClient,
    cache_dir: &Path,
    token: &str,
    id: &str,
    info: &ApplianceInfo,
    retry_every: Duration,
) -> Result<String, EnrolError> {
    let credential = pending_credential(cache_dir).map_err(EnrolError::Disk)?;
    let req = EnrolRequest {
        id: id.to_owned(),
        credential_sha256: sha256_hex(&credential),
        info: info.clone(),
    };
    let mut said = false;
    loop {
        match client.enrol(token, &req).await {
            Ok(answer) if answer.id == id => break,
            Ok(answer) => {
                return Err(EnrolError::Disk(format!(
                    "steering enrolled this appliance as {:?}, not {id:?}",
                    answer.id
                )));
            }
            Err(e @ ClientError::Refused { .. }) => return Err(EnrolError::Refused(e)),
            Err(e) => {
                if !said {
                    tracing::warn!(error = %e, "cannot enrol yet; retrying until steering answers");
                    said = true;
                }
                tokio::time::sleep(retry_every).await;
            }
        }
    }
    std::fs::rename(cache_dir.join(PENDING_FILE), credential_path(cache_dir))
        .and_then(|()| std::fs::File::open(cache_dir)?.sync_all())
        .map_err(|e| EnrolError::Disk(format!("cannot save the credential: {e}")))?;
    Ok(credential)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_pending_credential_survives_a_restart_and_is_private() {
        use std::os::unix::fs::PermissionsExt;
        let dir = std::env::temp_dir().join(format!("cc-enrol-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        assert_eq!(saved_credential(&dir).unwrap(), None);
        let first = pending_credential(&dir).unwrap();
        assert_eq!(pending_credential(&dir).unwrap(), first, "chosen once");
        let mode = std::fs::metadata(dir.join(PENDING_FILE))
            .unwrap()
            .permissions()
            .mode();
        assert_eq!(mode & 0o777, 0o600);
        assert_eq!(saved_credential(&dir).unwrap(), None, "not enrolled yet");
        std::fs::rename(dir.join(PENDING_FILE), credential_path(&dir)).unwrap();
        assert_eq!(saved_credential(&dir).unwrap(), Some(first.clone()));
        assert_ne!(
            pending_credential(&dir).unwrap(),
            first,
            "a new enrolment, a new credential"
        );
        assert_eq!(sha256_hex("abc").len(), 64);
        std::fs::remove_dir_all(&dir).unwrap();
    }
}
