//! Kernel TLS (cargo feature `ktls`): after rustls finishes the handshake, the
//! session keys go to the kernel (`setsockopt(TCP_ULP, "tls")` then `TLS_TX` and
//! `TLS_RX`), and the connection continues as if it were plaintext: sendfile
//! bodies, no user-space encryption. Support is detected once at start; where
//! the kernel lacks the `tls` module every connection stays on rustls.
//!
//! Limits, on purpose: a TLS 1.3 KeyUpdate or any non-data record from the
//! client after the handoff ends the connection (reads fail), which players do
//! not send in practice.

use std::io;
use std::os::fd::AsRawFd;

use rustls::ConnectionTrafficSecrets;
use rustls::server::UnbufferedServerConnection;
use tokio::net::TcpStream;

use crate::sys;

/// `linux/tls.h` cipher ids and versions.
const CIPHER_AES_GCM_128: u16 = 51;
const CIPHER_AES_GCM_256: u16 = 52;
const CIPHER_CHACHA20_POLY1305: u16 = 54;

/// Whether this kernel can take TLS sessions (checked once at start).
pub fn supported() -> bool {
    sys::ktls_available()
}

/// The `tls12_crypto_info_*` struct for one direction, laid out as the kernel
/// expects (all fields are byte arrays after two u16s, so there is no padding).
fn crypto_info(version: u16, seq: u64, secrets: &ConnectionTrafficSecrets) -> io::Result<Vec<u8>> {
    let mut info = Vec::with_capacity(56);
    let (cipher, key, iv) = match secrets {
        ConnectionTrafficSecrets::Aes128Gcm { key, iv } => {
            (CIPHER_AES_GCM_128, key.as_ref(), iv.as_ref())
        }
        ConnectionTrafficSecrets::Aes256Gcm { key, iv } => {
            (CIPHER_AES_GCM_256, key.as_ref(), iv.as_ref())
        }
        ConnectionTrafficSecrets::Chacha20Poly1305 { key, iv } => {
            (CIPHER_CHACHA20_POLY1305, key.as_ref(), iv.as_ref())
        }
        _ => return Err(io::Error::other("cipher suite not supported by kernel TLS")),
    };
    info.extend_from_slice(&version.to_ne_bytes());
    info.extend_from_slice(&cipher.to_ne_bytes());
    if cipher == CIPHER_CHACHA20_POLY1305 {
        // iv[12], key[32], rec_seq[8]
        info.extend_from_slice(iv);
        info.extend_from_slice(key);
    } else {
        // iv[8] (the per-record part), key, salt[4] (the implicit part), rec_seq[8]
        info.extend_from_slice(&iv[4..12]);
        info.extend_from_slice(key);
        info.extend_from_slice(&iv[..4]);
    }
    info.extend_from_slice(&seq.to_be_bytes());
    Ok(info)
}

/// Hand the session to the kernel. On error the connection is unusable (rustls
/// has given up its state) and must be closed.
pub fn hand_over(stream: &TcpStream, conn: UnbufferedServerConnection) -> io::Result<()> {
    let version = match conn.protocol_version() {
        Some(rustls::ProtocolVersion::TLSv1_3) => 0x0304,
        Some(rustls::ProtocolVersion::TLSv1_2) => 0x0303,
        _ => return Err(io::Error::other("unknown TLS version")),
    };
    let (secrets, _kernel) = conn
        .dangerous_into_kernel_connection()
        .map_err(|e| io::Error::new(io::ErrorKind::InvalidData, e))?;
    let fd = stream.as_raw_fd();
    sys::set_tls_ulp(fd)?;
    sys::set_tls_crypto(
        fd,
        sys::TlsDirection::Tx,
        &crypto_info(version, secrets.tx.0, &secrets.tx.1)?,
    )?;
    sys::set_tls_crypto(
        fd,
        sys::TlsDirection::Rx,
        &crypto_info(version, secrets.rx.0, &secrets.rx.1)?,
    )?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use rustls::crypto::cipher::{AeadKey, Iv};

    #[test]
    fn crypto_info_matches_the_kernel_layout() {
        let iv: [u8; 12] = std::array::from_fn(|i| i as u8);
        let aes256 = ConnectionTrafficSecrets::Aes256Gcm {
            key: AeadKey::from([0xAA; 32]),
            iv: Iv::new(iv),
        };
        let info = crypto_info(0x0304, 7, &aes256).unwrap();
        // version, cipher, iv[8], key[32], salt[4], rec_seq[8]
        assert_eq!(info.len(), 2 + 2 + 8 + 32 + 4 + 8);
        assert_eq!(&info[..2], &0x0304u16.to_ne_bytes());
        assert_eq!(&info[2..4], &CIPHER_AES_GCM_256.to_ne_bytes());
        assert_eq!(&info[4..12], &iv[4..12]);
        assert_eq!(&info[12..44], &[0xAA; 32]);
        assert_eq!(&info[44..48], &iv[..4]);
        assert_eq!(&info[48..], &7u64.to_be_bytes());
        let chacha = ConnectionTrafficSecrets::Chacha20Poly1305 {
            key: AeadKey::from([1u8; 32]),
            iv: Iv::new(iv),
        };
        assert_eq!(
            crypto_info(0x0303, 0, &chacha).unwrap().len(),
            2 + 2 + 12 + 32 + 8
        );
    }
}
