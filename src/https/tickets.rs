//! TLS session tickets that every shard of one supervisor can open, so that a client resumes its
//! session whichever shard the kernel's reuseport hash gives its next connection to.
//!
//! It owns the shared secret (made once per supervisor process, in a sealed memfd the shards
//! inherit: never in the environment or the hand-off's text), the keys derived from it, one per
//! six-hour period, and the ticket format. It must not know about connections or configuration
//! files. rustls's own ticketer draws a random key per process: with several shards a resumed
//! connection would land on another shard, and fail to resume, most of the time.
//!
//! A ticket is `period (8 bytes, big-endian) || nonce (12) || ChaCha20-Poly1305(state) || tag`,
//! the period authenticated as associated data. The key of period `p` is
//! `HMAC-SHA256(secret, p)`: every shard derives the same one from the clock, and a ticket opens
//! during its own period and the next, so it lives six to twelve hours.

use std::io;
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd, RawFd};
use std::sync::OnceLock;
use std::time::{SystemTime, UNIX_EPOCH};

use ring::aead::{Aad, CHACHA20_POLY1305, LessSafeKey, NONCE_LEN, Nonce, UnboundKey};
use ring::hmac;
use ring::rand::{SecureRandom, SystemRandom};
use rustls::server::ProducesTickets;

/// The shared secret's length.
pub const SECRET_LEN: usize = 32;

/// How long one key issues tickets; it opens them for one more period.
const PERIOD_SECS: u64 = 6 * 3600;

const PERIOD_LEN: usize = 8;

/// The supervisor's memfd holding the secret, made on first use and kept for the process's life
/// (close-on-exec; the spawn clears that for the shard it hands it to).
pub fn secret_fd() -> io::Result<RawFd> {
    static FD: OnceLock<OwnedFd> = OnceLock::new();
    if let Some(fd) = FD.get() {
        return Ok(fd.as_raw_fd());
    }
    let mut secret = [0u8; SECRET_LEN];
    SystemRandom::new().fill(&mut secret).map_err(|_| io::Error::other("no randomness for the ticket secret"))?;
    // SAFETY: memfd_create with a valid NUL-terminated name; the fd is owned by the OwnedFd below.
    let raw = unsafe { libc::memfd_create(c"hitcore-tickets".as_ptr(), libc::MFD_CLOEXEC | libc::MFD_ALLOW_SEALING) };
    if raw < 0 {
        return Err(io::Error::last_os_error());
    }
    // SAFETY: a descriptor just created and owned by nothing else.
    let fd = unsafe { OwnedFd::from_raw_fd(raw) };
    // SAFETY: a valid descriptor and a valid buffer of SECRET_LEN bytes.
    if unsafe { libc::pwrite(raw, secret.as_ptr().cast(), SECRET_LEN, 0) } != SECRET_LEN as isize {
        return Err(io::Error::last_os_error());
    }
    // Sealed: a shard can read the secret but not change it under its siblings.
    let seals = libc::F_SEAL_SEAL | libc::F_SEAL_SHRINK | libc::F_SEAL_GROW | libc::F_SEAL_WRITE;
    // SAFETY: fcntl on a valid memfd made with MFD_ALLOW_SEALING.
    if unsafe { libc::fcntl(raw, libc::F_ADD_SEALS, seals) } < 0 {
        return Err(io::Error::last_os_error());
    }
    Ok(FD.get_or_init(|| fd).as_raw_fd())
}

/// Reads the secret from the memfd a shard inherited, and closes it.
pub fn read_secret(fd: RawFd) -> io::Result<[u8; SECRET_LEN]> {
    // SAFETY: the supervisor passed this memfd to this process alone; nothing else here owns it.
    let fd = unsafe { OwnedFd::from_raw_fd(fd) };
    let mut secret = [0u8; SECRET_LEN];
    // SAFETY: a valid descriptor and a valid buffer of SECRET_LEN bytes.
    let n = unsafe { libc::pread(fd.as_raw_fd(), secret.as_mut_ptr().cast(), SECRET_LEN, 0) };
    if n != SECRET_LEN as isize {
        return Err(io::Error::other("the ticket secret's memfd is short"));
    }
    Ok(secret)
}

/// Tickets sealed with keys derived from a secret every shard shares.
pub struct SharedTickets {
    secret: hmac::Key,
    random: SystemRandom,
}

impl std::fmt::Debug for SharedTickets {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("SharedTickets")
    }
}

impl SharedTickets {
    /// Tickets under `secret`.
    pub fn new(secret: &[u8; SECRET_LEN]) -> SharedTickets {
        SharedTickets { secret: hmac::Key::new(hmac::HMAC_SHA256, secret), random: SystemRandom::new() }
    }

    fn key(&self, period: u64) -> LessSafeKey {
        let tag = hmac::sign(&self.secret, &period.to_be_bytes());
        // An HMAC-SHA256 tag is 32 bytes, ChaCha20-Poly1305's key length.
        LessSafeKey::new(UnboundKey::new(&CHACHA20_POLY1305, tag.as_ref()).expect("a 32-byte key"))
    }

    fn seal(&self, state: &[u8], period: u64) -> Option<Vec<u8>> {
        let mut nonce = [0u8; NONCE_LEN];
        self.random.fill(&mut nonce).ok()?;
        let mut ticket = Vec::with_capacity(PERIOD_LEN + NONCE_LEN + state.len() + CHACHA20_POLY1305.tag_len());
        ticket.extend_from_slice(&period.to_be_bytes());
        ticket.extend_from_slice(&nonce);
        let mut body = state.to_vec();
        let aad = Aad::from(period.to_be_bytes());
        self.key(period).seal_in_place_append_tag(Nonce::assume_unique_for_key(nonce), aad, &mut body).ok()?;
        ticket.extend_from_slice(&body);
        Some(ticket)
    }

    fn open(&self, ticket: &[u8], now: u64) -> Option<Vec<u8>> {
        if ticket.len() < PERIOD_LEN + NONCE_LEN + CHACHA20_POLY1305.tag_len() {
            return None;
        }
        let period = u64::from_be_bytes(ticket[..PERIOD_LEN].try_into().ok()?);
        if period != now && period.checked_add(1) != Some(now) {
            return None;
        }
        let nonce = Nonce::try_assume_unique_for_key(&ticket[PERIOD_LEN..PERIOD_LEN + NONCE_LEN]).ok()?;
        let mut body = ticket[PERIOD_LEN + NONCE_LEN..].to_vec();
        let aad = Aad::from(period.to_be_bytes());
        let state = self.key(period).open_in_place(nonce, aad, &mut body).ok()?;
        Some(state.to_vec())
    }
}

fn current_period() -> u64 {
    SystemTime::now().duration_since(UNIX_EPOCH).map_or(0, |d| d.as_secs() / PERIOD_SECS)
}

impl ProducesTickets for SharedTickets {
    fn enabled(&self) -> bool {
        true
    }

    fn lifetime(&self) -> u32 {
        PERIOD_SECS as u32
    }

    fn encrypt(&self, state: &[u8]) -> Option<Vec<u8>> {
        self.seal(state, current_period())
    }

    fn decrypt(&self, ticket: &[u8]) -> Option<Vec<u8>> {
        self.open(ticket, current_period())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_sibling_opens_what_one_sealed_and_nothing_else() {
        let secret = [7u8; SECRET_LEN];
        let (a, b) = (SharedTickets::new(&secret), SharedTickets::new(&secret));
        let other = SharedTickets::new(&[8u8; SECRET_LEN]);
        let ticket = a.seal(b"session state", 100).unwrap();
        assert_eq!(b.open(&ticket, 100).as_deref(), Some(&b"session state"[..]));
        assert_eq!(b.open(&ticket, 101).as_deref(), Some(&b"session state"[..]), "the next period still opens it");
        assert_eq!(b.open(&ticket, 102), None, "two periods on it has expired");
        assert_eq!(b.open(&ticket, 99), None, "a ticket from the future");
        assert_eq!(other.open(&ticket, 100), None, "another supervisor's secret");
        // Any flipped bit, the period included, and any truncation is refused.
        for i in 0..ticket.len() {
            let mut bad = ticket.clone();
            bad[i] ^= 1;
            assert_eq!(b.open(&bad, 100), None, "bit flipped in byte {i}");
            assert_eq!(b.open(&ticket[..i], 100), None, "cut at {i}");
        }
        assert_ne!(a.seal(b"session state", 100), Some(ticket), "a fresh nonce each time");
    }

    #[test]
    fn the_secret_travels_through_its_memfd() {
        let fd = secret_fd().unwrap();
        assert_eq!(secret_fd().unwrap(), fd, "one secret per process");
        // SAFETY: a duplicate of the memfd, owned by read_secret, which closes it.
        let dup = unsafe { libc::dup(fd) };
        let secret = read_secret(dup).unwrap();
        assert_ne!(secret, [0u8; SECRET_LEN]);
        // SAFETY: a valid descriptor and buffer; the write must fail on the sealed memfd.
        assert!(unsafe { libc::pwrite(fd, [1u8].as_ptr().cast(), 1, 0) } < 0, "sealed against writes");
    }
}
