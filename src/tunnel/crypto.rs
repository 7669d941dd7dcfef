//! frp's authentication and control-stream encryption (spec §6 and §8), as pure functions and
//! buffer-to-buffer ciphers.
//!
//! * [`privilege_key`]: `md5(token ‖ decimal timestamp)`, proof of the shared frp token in
//!   Login (and, with extra auth scopes, in Ping and `NewWorkConn`). Compare with
//!   [`privilege_key_matches`], never with `==`.
//! * [`AesKey::from_token`]: PBKDF2-HMAC-SHA1(token, salt `"frp"`, 64 rounds, 16 bytes).
//! * [`Encryptor`] / [`Decryptor`]: AES-128-CFB (128-bit segments) as one continuous stream
//!   per direction. The writer's random IV is the first 16 bytes of its direction, written
//!   lazily right before its first ciphertext; the reader takes the peer's IV from the first
//!   16 bytes it receives. Both handle any chunking, so they sit directly on a byte stream.
//!
//! None of this is strong cryptography (MD5, 64 PBKDF2 rounds, no MAC, and HaRP's token is
//! empty, so its key is public); it is here for compatibility. Confidentiality and peer
//! authentication come from TLS.

use std::fmt;
use std::num::NonZeroU32;

use aes::Aes128;
use bytes::{Buf, BytesMut};
use cfb_mode::cipher::KeyIvInit;
use cfb_mode::{BufDecryptor, BufEncryptor};
use md5::{Digest, Md5};
use ring::rand::{SecureRandom, SystemRandom};
use subtle::ConstantTimeEq;

/// AES-128 key and CFB IV length.
pub const KEY_LEN: usize = 16;
pub const IV_LEN: usize = 16;

/// Both frpc and frps set this salt at start-up (golib's own default would be `"crypto"`).
const PBKDF2_SALT: &[u8] = b"frp";
const PBKDF2_ROUNDS: NonZeroU32 = match NonZeroU32::new(64) {
    Some(n) => n,
    None => unreachable!(),
};

fn lower_hex(bytes: &[u8]) -> String {
    const DIGITS: &[u8; 16] = b"0123456789abcdef";
    let mut out = String::with_capacity(bytes.len() * 2);
    for b in bytes {
        out.push(DIGITS[usize::from(b >> 4)] as char);
        out.push(DIGITS[usize::from(b & 0x0f)] as char);
    }
    out
}

/// `lowercase_hex(md5(token ‖ decimal(timestamp)))`, 32 characters. An empty token (HaRP)
/// is not special: the key is then just the MD5 of the timestamp.
pub fn privilege_key(token: &str, timestamp: i64) -> String {
    let mut md5 = Md5::new();
    md5.update(token.as_bytes());
    md5.update(timestamp.to_string().as_bytes());
    lower_hex(&md5.finalize())
}

/// Checks a peer's `privilege_key` against our token in constant time, as frps does. The
/// timestamp is the one the peer sent; frp checks no freshness.
pub fn privilege_key_matches(token: &str, timestamp: i64, presented: &str) -> bool {
    ct_eq(
        privilege_key(token, timestamp).as_bytes(),
        presented.as_bytes(),
    )
}

/// Equality whose timing depends only on the lengths, for comparing secrets (tokens, keys).
pub fn ct_eq(a: &[u8], b: &[u8]) -> bool {
    a.ct_eq(b).into()
}

/// The AES-128 key both directions of a control stream use, derived from the frp token.
#[derive(Clone, PartialEq, Eq)]
pub struct AesKey([u8; KEY_LEN]);

impl AesKey {
    pub fn from_token(token: &str) -> AesKey {
        let mut key = [0u8; KEY_LEN];
        ring::pbkdf2::derive(
            ring::pbkdf2::PBKDF2_HMAC_SHA1,
            PBKDF2_ROUNDS,
            PBKDF2_SALT,
            token.as_bytes(),
            &mut key,
        );
        AesKey(key)
    }

    pub fn as_bytes(&self) -> &[u8; KEY_LEN] {
        &self.0
    }
}

impl fmt::Debug for AesKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("AesKey(<redacted>)")
    }
}

/// The operating system's random source failed; nothing secure can be generated.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RngError;

impl fmt::Display for RngError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("the system random number generator failed")
    }
}

impl std::error::Error for RngError {}

fn random_bytes<const N: usize>() -> Result<[u8; N], RngError> {
    let mut out = [0u8; N];
    SystemRandom::new().fill(&mut out).map_err(|_| RngError)?;
    Ok(out)
}

/// A fresh IV for one direction of an encrypted stream.
pub fn random_iv() -> Result<[u8; IV_LEN], RngError> {
    random_bytes()
}

/// A fresh `run_id` for a first login: 16 lowercase hex characters, like frps.
pub fn new_run_id() -> Result<String, RngError> {
    Ok(lower_hex(&random_bytes::<8>()?))
}

/// The sending half of an encrypted direction.
pub struct Encryptor {
    cipher: BufEncryptor<Aes128>,
    /// `Some` until the IV has been written out ahead of the first ciphertext.
    pending_iv: Option<[u8; IV_LEN]>,
}

impl Encryptor {
    /// `iv` must be fresh for every stream direction ([`random_iv`]); tests pass fixed ones.
    pub fn new(key: &AesKey, iv: [u8; IV_LEN]) -> Encryptor {
        Encryptor {
            cipher: BufEncryptor::new(key.as_bytes().into(), (&iv).into()),
            pending_iv: Some(iv),
        }
    }

    /// A fresh encryptor with a random IV.
    pub fn with_random_iv(key: &AesKey) -> Result<Encryptor, RngError> {
        Ok(Encryptor::new(key, random_iv()?))
    }

    /// Appends the ciphertext of `plain` to `out`, preceded by the IV on the first non-empty
    /// call. Consecutive calls continue one cipher stream, so chunking does not matter.
    pub fn encrypt(&mut self, plain: &[u8], out: &mut BytesMut) {
        if plain.is_empty() {
            return;
        }
        if let Some(iv) = self.pending_iv.take() {
            out.extend_from_slice(&iv);
        }
        let start = out.len();
        out.extend_from_slice(plain);
        self.cipher.encrypt(&mut out[start..]);
    }

    /// Whether the IV has gone out, i.e. whether the peer can already decrypt.
    pub fn iv_sent(&self) -> bool {
        self.pending_iv.is_none()
    }
}

impl fmt::Debug for Encryptor {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Encryptor")
            .field("iv_sent", &self.iv_sent())
            .finish_non_exhaustive()
    }
}

/// The receiving half of an encrypted direction.
pub struct Decryptor {
    key: AesKey,
    iv: [u8; IV_LEN],
    iv_filled: usize,
    /// Set once the whole IV has arrived.
    cipher: Option<BufDecryptor<Aes128>>,
}

impl Decryptor {
    pub fn new(key: &AesKey) -> Decryptor {
        Decryptor {
            key: key.clone(),
            iv: [0; IV_LEN],
            iv_filled: 0,
            cipher: None,
        }
    }

    /// Consumes bytes received on the wire and appends the plaintext to `out`. The first
    /// [`IV_LEN`] bytes of the direction are the peer's IV and produce no output; any chunking
    /// of the input (including an IV split across calls) gives the same plaintext.
    pub fn decrypt(&mut self, mut wire: &[u8], out: &mut BytesMut) {
        let cipher = match &mut self.cipher {
            Some(cipher) => cipher,
            None => {
                let take = (IV_LEN - self.iv_filled).min(wire.len());
                self.iv[self.iv_filled..self.iv_filled + take].copy_from_slice(&wire[..take]);
                self.iv_filled += take;
                wire.advance(take);
                if self.iv_filled < IV_LEN {
                    return;
                }
                self.cipher.insert(BufDecryptor::new(
                    self.key.as_bytes().into(),
                    (&self.iv).into(),
                ))
            }
        };
        let start = out.len();
        out.extend_from_slice(wire);
        cipher.decrypt(&mut out[start..]);
    }

    /// Whether the peer's IV has fully arrived.
    pub fn iv_received(&self) -> bool {
        self.cipher.is_some()
    }
}

impl fmt::Debug for Decryptor {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Decryptor")
            .field("iv_received", &self.iv_received())
            .finish_non_exhaustive()
    }
}
