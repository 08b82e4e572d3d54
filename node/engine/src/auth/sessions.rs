use std::collections::HashMap;
use std::net::IpAddr;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use argon2::Argon2;
use argon2::password_hash::{PasswordHash, PasswordHasher, PasswordVerifier, SaltString};
use base64::Engine;
use base64::engine::DecodePaddingMode;
use base64::engine::general_purpose::{GeneralPurpose, GeneralPurposeConfig, URL_SAFE_NO_PAD};
use rand::RngCore;
use thiserror::Error;

use super::principal::{Principal, Role};
use super::throttle::{FailureKey, LoginRefusals, LoginThrottle, Refusal};
use crate::limits::{
    ARGON2_CONCURRENT_MAX, AUTHORIZATION_LENGTH_MAX_BYTES, LOGIN_WAIT_MAX_MS, SESSIONS_MAX,
    SESSIONS_PER_USER_MAX,
};

/// Standard base64, padded or not: Go's Flight client omits the padding.
const BASIC_CREDENTIALS: GeneralPurpose = GeneralPurpose::new(
    &base64::alphabet::STANDARD,
    GeneralPurposeConfig::new().with_decode_padding_mode(DecodePaddingMode::Indifferent),
);

#[derive(Debug, Error, PartialEq, Eq)]
pub enum AuthError {
    #[error(
        "no credentials: send `authorization: Basic ...` to the handshake, then the bearer token"
    )]
    MissingCredentials,
    #[error("malformed authorization header")]
    Malformed,
    #[error("invalid user name or password")]
    InvalidCredentials,
    #[error("unknown or expired bearer token; authenticate again")]
    InvalidToken,
    #[error("too many open sessions (sessions_max = {SESSIONS_MAX})")]
    TooManySessions,
    #[error(
        "too many failed logins for this user name or client address; retry in {retry_after_s} s"
    )]
    Throttled { retry_after_s: u64 },
    #[error(
        "too many logins at once (argon2_concurrent_max = {ARGON2_CONCURRENT_MAX}, waited login_wait_max_ms = {LOGIN_WAIT_MAX_MS}); retry"
    )]
    Busy,
}

impl crate::error_kind::Classify for AuthError {
    fn kind(&self) -> crate::error_kind::ErrorKind {
        use crate::error_kind::ErrorKind;
        match self {
            AuthError::MissingCredentials
            | AuthError::Malformed
            | AuthError::InvalidCredentials
            | AuthError::InvalidToken => ErrorKind::Unauthenticated,
            AuthError::TooManySessions | AuthError::Throttled { .. } => ErrorKind::Exhausted,
            AuthError::Busy => ErrorKind::Unavailable,
        }
    }
}

/// A configured user, as the authenticator needs it.
#[derive(Clone, Debug)]
pub struct UserRecord {
    pub password_hash: String,
    pub role: Role,
    pub home_region: String,
    pub compliance: Vec<String>,
}

struct Session {
    principal: Principal,
    options: SessionOptions,
    expires_at: Instant,
}

/// What a client set for its session with `SET name = value`; each statement of the
/// session runs with them.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct SessionOptions {
    /// `domicile.mesh_partial_results`: a `mesh.<table>` query answers from the regions
    /// it reaches, with a warning naming the others, instead of failing.
    pub mesh_partial_results: bool,
    /// The transaction SQL `BEGIN` opened in this session: statements of the session
    /// that name no Flight SQL transaction run in it until `COMMIT` or `ROLLBACK`.
    pub transaction: Option<[u8; 16]>,
}

impl SessionOptions {
    pub const MESH_PARTIAL_RESULTS: &'static str = "domicile.mesh_partial_results";

    /// Sets option `name` from its SQL text value.
    pub fn set(&mut self, name: &str, value: &str) -> Result<(), String> {
        if !name.eq_ignore_ascii_case(Self::MESH_PARTIAL_RESULTS) {
            return Err(format!(
                "unknown session option {name} (known: {})",
                Self::MESH_PARTIAL_RESULTS
            ));
        }
        self.mesh_partial_results = match value.to_ascii_lowercase().as_str() {
            "true" | "on" | "1" => true,
            "false" | "off" | "0" => false,
            other => return Err(format!("{name} is true or false, not {other}")),
        };
        Ok(())
    }
}

/// Verifies passwords and hands out bearer tokens. Tokens live in memory only: a restart
/// logs every client out, which clients handle by repeating the handshake.
pub struct Authenticator {
    users: HashMap<String, UserRecord>,
    sessions: Mutex<HashMap<String, Session>>,
    token_ttl: Duration,
    /// Verified against when the user is unknown, so both failures cost the same time.
    dummy_hash: String,
    throttle: LoginThrottle,
}

impl Authenticator {
    pub fn new(users: HashMap<String, UserRecord>, token_ttl: Duration) -> Arc<Self> {
        let dummy_hash = hash_password("not a real password").unwrap_or_default();
        Arc::new(Self {
            users,
            sessions: Mutex::new(HashMap::new()),
            token_ttl,
            dummy_hash,
            throttle: LoginThrottle::default(),
        })
    }

    /// Logins refused since start (blocked by back-off, busy, wrong password).
    pub fn login_refusals(&self) -> &LoginRefusals {
        &self.throttle.refusals
    }

    /// Checks `authorization: Basic base64(user:password)` from a client at `client`
    /// without opening a session (for APIs that authenticate every call). Runs argon2 on
    /// a blocking thread, behind the login throttle (see `throttle`): it is deliberately
    /// slow, so a refused or blocked attempt must not reach it.
    ///
    /// Errors: `Malformed` for a header longer than `AUTHORIZATION_LENGTH_MAX_BYTES`,
    /// `Throttled` after repeated failures for the name or the address, `Busy` when every
    /// argon2 slot stayed taken, `InvalidCredentials`.
    pub async fn verify_basic(
        self: &Arc<Self>,
        authorization: Option<&str>,
        client: Option<IpAddr>,
    ) -> Result<Principal, AuthError> {
        let header = authorization.ok_or(AuthError::MissingCredentials)?;
        if header.len() > AUTHORIZATION_LENGTH_MAX_BYTES {
            return Err(AuthError::Malformed);
        }
        let (user, password) = parse_basic(header)?;
        let mut keys = vec![FailureKey::User(user.clone())];
        keys.extend(client.map(FailureKey::address));
        self.throttle
            .check(&keys, Instant::now())
            .map_err(refusal_error)?;
        let slot = self.throttle.slot().await.map_err(refusal_error)?;
        // Checked again with the slot held: attempts queued behind a burst of failures
        // are refused once the burst has blocked their key, not run.
        self.throttle
            .check(&keys, Instant::now())
            .map_err(refusal_error)?;
        // The slot, the check and the accounting all live in the blocking task: if the
        // client cancels its login, argon2 still ends holding the slot and its failure
        // still counts.
        let this = Arc::clone(self);
        tokio::task::spawn_blocking(move || {
            let verified = this.verify(&user, &password);
            match &verified {
                Ok(_) => this.throttle.succeeded(&keys),
                Err(_) => this.throttle.failed(&keys, Instant::now()),
            }
            drop(slot);
            verified
        })
        .await
        .map_err(|_| AuthError::InvalidCredentials)?
    }

    /// Checks `authorization: Basic base64(user:password)` and opens a session.
    pub async fn handshake(
        self: &Arc<Self>,
        authorization: Option<&str>,
        client: Option<IpAddr>,
    ) -> Result<(String, Principal), AuthError> {
        let principal = self.verify_basic(authorization, client).await?;
        let token = self.open_session(principal.clone())?;
        Ok((token, principal))
    }

    fn verify(&self, user: &str, password: &str) -> Result<Principal, AuthError> {
        let record = self.users.get(user);
        let hash = record.map_or(self.dummy_hash.as_str(), |r| r.password_hash.as_str());
        let matches = verify_password(password, hash);
        match record {
            Some(record) if matches => Ok(Principal {
                user: user.to_string(),
                role: record.role,
                home_region: record.home_region.clone(),
                compliance: record.compliance.clone(),
            }),
            _ => Err(AuthError::InvalidCredentials),
        }
    }

    fn open_session(&self, principal: Principal) -> Result<String, AuthError> {
        let mut bytes = [0u8; 32];
        rand::rng().fill_bytes(&mut bytes);
        let token = URL_SAFE_NO_PAD.encode(bytes);
        let now = Instant::now();
        let mut sessions = self.sessions.lock().expect("session lock poisoned");
        // A user holds at most SESSIONS_PER_USER_MAX sessions: a new one ends the oldest,
        // so one user (or a client that never closes) cannot fill the node's table.
        let user = principal.user.as_str();
        let of_user = sessions
            .values()
            .filter(|s| s.principal.user == user)
            .count();
        if of_user >= SESSIONS_PER_USER_MAX {
            let oldest = sessions
                .iter()
                .filter(|(_, s)| s.principal.user == user)
                .min_by_key(|(_, s)| s.expires_at)
                .map(|(token, _)| token.clone());
            if let Some(oldest) = oldest {
                sessions.remove(&oldest);
            }
        }
        if sessions.len() >= SESSIONS_MAX {
            sessions.retain(|_, s| s.expires_at > now);
            if sessions.len() >= SESSIONS_MAX {
                return Err(AuthError::TooManySessions);
            }
        }
        sessions.insert(
            token.clone(),
            Session {
                principal,
                options: SessionOptions::default(),
                expires_at: now + self.token_ttl,
            },
        );
        Ok(token)
    }

    /// The principal behind `authorization: Bearer <token>`.
    pub fn principal(&self, authorization: Option<&str>) -> Result<Principal, AuthError> {
        self.with_session(authorization, |session| session.principal.clone())
    }

    /// The principal behind the token and the options its session set.
    pub fn session(
        &self,
        authorization: Option<&str>,
    ) -> Result<(Principal, SessionOptions), AuthError> {
        self.with_session(authorization, |session| {
            (session.principal.clone(), session.options.clone())
        })
    }

    /// Sets a session option for the session behind the token.
    pub fn set_option(
        &self,
        authorization: Option<&str>,
        name: &str,
        value: &str,
    ) -> Result<Result<(), String>, AuthError> {
        self.with_session(authorization, |session| session.options.set(name, value))
    }

    /// Sets (or, with `None`, clears) the transaction SQL `BEGIN` opened in the session
    /// behind the token.
    pub fn set_transaction(
        &self,
        authorization: Option<&str>,
        transaction: Option<[u8; 16]>,
    ) -> Result<(), AuthError> {
        self.with_session(authorization, |session| {
            session.options.transaction = transaction;
        })
    }

    /// Runs `change` on the options of the session behind the token.
    pub fn with_options<T>(
        &self,
        authorization: Option<&str>,
        change: impl FnOnce(&mut SessionOptions) -> T,
    ) -> Result<T, AuthError> {
        self.with_session(authorization, |session| change(&mut session.options))
    }

    /// Ends the session behind the token (Flight's CloseSession): the token is refused
    /// from now on. Returns its principal and the SQL transaction it had open, for the
    /// caller to roll back.
    pub fn close(
        &self,
        authorization: Option<&str>,
    ) -> Result<(Principal, Option<[u8; 16]>), AuthError> {
        let (principal, options) = self.session(authorization)?;
        let header = authorization.ok_or(AuthError::MissingCredentials)?;
        let token = header
            .strip_prefix("Bearer ")
            .ok_or(AuthError::Malformed)?
            .trim();
        self.sessions
            .lock()
            .expect("session lock poisoned")
            .remove(token);
        Ok((principal, options.transaction))
    }

    fn with_session<T>(
        &self,
        authorization: Option<&str>,
        f: impl FnOnce(&mut Session) -> T,
    ) -> Result<T, AuthError> {
        let header = authorization.ok_or(AuthError::MissingCredentials)?;
        let token = header
            .strip_prefix("Bearer ")
            .ok_or(AuthError::Malformed)?
            .trim();
        let mut sessions = self.sessions.lock().expect("session lock poisoned");
        match sessions.get_mut(token) {
            Some(session) if session.expires_at > Instant::now() => Ok(f(session)),
            Some(_) => {
                sessions.remove(token);
                Err(AuthError::InvalidToken)
            }
            None => Err(AuthError::InvalidToken),
        }
    }

    /// Whether any user would accept `password`; used to refuse well-known demo
    /// credentials on non-loopback addresses.
    pub fn accepts_password_for(&self, user: &str, password: &str) -> bool {
        self.users
            .get(user)
            .is_some_and(|r| verify_password(password, &r.password_hash))
    }
}

fn refusal_error(refusal: Refusal) -> AuthError {
    match refusal {
        Refusal::Blocked(wait) => AuthError::Throttled {
            retry_after_s: wait.as_secs() + u64::from(wait.subsec_nanos() > 0),
        },
        Refusal::Busy => AuthError::Busy,
    }
}

/// (user, password) from a basic `authorization` header.
fn parse_basic(header: &str) -> Result<(String, String), AuthError> {
    let encoded = strip_scheme(header, "basic").ok_or(AuthError::Malformed)?;
    let decoded = BASIC_CREDENTIALS
        .decode(encoded.trim())
        .map_err(|_| AuthError::Malformed)?;
    let text = String::from_utf8(decoded).map_err(|_| AuthError::Malformed)?;
    let (user, password) = text.split_once(':').ok_or(AuthError::Malformed)?;
    Ok((user.to_string(), password.to_string()))
}

/// The credentials after an HTTP auth scheme name, which is case-insensitive (RFC 9110):
/// Go's Flight client sends `basic`, Java's `Basic`.
fn strip_scheme<'a>(header: &'a str, scheme: &str) -> Option<&'a str> {
    let (name, rest) = header.trim_start().split_once(' ')?;
    name.eq_ignore_ascii_case(scheme).then_some(rest)
}

fn verify_password(password: &str, hash: &str) -> bool {
    PasswordHash::new(hash).is_ok_and(|parsed| {
        Argon2::default()
            .verify_password(password.as_bytes(), &parsed)
            .is_ok()
    })
}

/// An argon2id PHC string for `password`, for the `users` section of the config.
pub fn hash_password(password: &str) -> Result<String, String> {
    let mut salt_bytes = [0u8; 16];
    rand::rng().fill_bytes(&mut salt_bytes);
    let salt = SaltString::encode_b64(&salt_bytes).map_err(|e| e.to_string())?;
    Argon2::default()
        .hash_password(password.as_bytes(), &salt)
        .map(|h| h.to_string())
        .map_err(|e| e.to_string())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn authenticator(ttl: Duration) -> Arc<Authenticator> {
        let hash = hash_password("s3cret").expect("hashes");
        let users = HashMap::from([(
            "ana".to_string(),
            UserRecord {
                password_hash: hash,
                role: Role::Writer,
                home_region: "eu-central".into(),
                compliance: Vec::new(),
            },
        )]);
        Authenticator::new(users, ttl)
    }

    fn basic(user: &str, password: &str) -> String {
        let encoded =
            base64::engine::general_purpose::STANDARD.encode(format!("{user}:{password}"));
        format!("Basic {encoded}")
    }

    #[tokio::test]
    async fn right_password_gives_a_token_that_names_the_principal() {
        let auth = authenticator(Duration::from_secs(60));
        let (token, principal) = auth
            .handshake(Some(&basic("ana", "s3cret")), None)
            .await
            .expect("accepted");
        assert_eq!(principal.role, Role::Writer);
        let again = auth
            .principal(Some(&format!("Bearer {token}")))
            .expect("token valid");
        assert_eq!(again, principal);
    }

    #[tokio::test]
    async fn wrong_password_unknown_user_and_bad_tokens_are_refused() {
        let auth = authenticator(Duration::from_secs(60));
        assert_eq!(
            auth.handshake(Some(&basic("ana", "nope")), None)
                .await
                .err(),
            Some(AuthError::InvalidCredentials)
        );
        assert_eq!(
            auth.handshake(Some(&basic("bob", "s3cret")), None)
                .await
                .err(),
            Some(AuthError::InvalidCredentials)
        );
        assert_eq!(
            auth.handshake(None, None).await.err(),
            Some(AuthError::MissingCredentials)
        );
        assert_eq!(
            auth.handshake(Some("Basic !!!"), None).await.err(),
            Some(AuthError::Malformed)
        );
        assert_eq!(
            auth.principal(Some("Bearer forged")).err(),
            Some(AuthError::InvalidToken)
        );
    }

    #[tokio::test]
    async fn expired_tokens_are_refused() {
        let auth = authenticator(Duration::from_millis(1));
        let (token, _) = auth
            .handshake(Some(&basic("ana", "s3cret")), None)
            .await
            .expect("accepted");
        std::thread::sleep(Duration::from_millis(5));
        assert_eq!(
            auth.principal(Some(&format!("Bearer {token}"))).err(),
            Some(AuthError::InvalidToken)
        );
    }

    /// Issue 21: guessing a password costs the guesser, not the node: after the free
    /// failures even the right password is refused without argon2 running, and the
    /// block holds for the name from another address and for the address with another
    /// name.
    #[tokio::test]
    async fn guessing_is_throttled_by_name_and_by_address() {
        let auth = authenticator(Duration::from_secs(60));
        let attacker = Some(IpAddr::from([203, 0, 113, 7]));
        for _ in 0..crate::limits::LOGIN_FAILURES_FREE {
            assert_eq!(
                auth.handshake(Some(&basic("ana", "guess")), attacker)
                    .await
                    .err(),
                Some(AuthError::InvalidCredentials)
            );
        }
        let refused = auth
            .handshake(Some(&basic("ana", "s3cret")), attacker)
            .await;
        assert_eq!(
            refused.err(),
            Some(AuthError::Throttled { retry_after_s: 1 })
        );
        let elsewhere = Some(IpAddr::from([198, 51, 100, 2]));
        assert!(matches!(
            auth.handshake(Some(&basic("ana", "s3cret")), elsewhere)
                .await,
            Err(AuthError::Throttled { .. })
        ));
        assert!(matches!(
            auth.handshake(Some(&basic("bob", "x")), attacker).await,
            Err(AuthError::Throttled { .. })
        ));
        let refusals = auth.login_refusals();
        assert_eq!(
            refusals.failed.load(std::sync::atomic::Ordering::Relaxed),
            u64::from(crate::limits::LOGIN_FAILURES_FREE)
        );
        assert_eq!(
            refusals.blocked.load(std::sync::atomic::Ordering::Relaxed),
            3
        );
    }

    #[test]
    fn an_oversized_authorization_header_is_refused_unparsed() {
        let auth = authenticator(Duration::from_secs(60));
        let huge = format!(
            "Basic {}",
            "A".repeat(crate::limits::AUTHORIZATION_LENGTH_MAX_BYTES)
        );
        let outcome = tokio::runtime::Builder::new_current_thread()
            .build()
            .expect("runtime")
            .block_on(auth.verify_basic(Some(&huge), None));
        assert_eq!(outcome.err(), Some(AuthError::Malformed));
    }

    /// Issue 21: one user could fill the node-wide session table. A user's sessions are
    /// bounded; the newest replaces the oldest, and other users are untouched.
    #[test]
    fn one_user_cannot_fill_the_session_table() {
        let auth = authenticator(Duration::from_secs(60));
        let principal = |user: &str| Principal {
            user: user.into(),
            role: Role::Writer,
            home_region: "eu-central".into(),
            compliance: Vec::new(),
        };
        let other = auth.open_session(principal("bob")).expect("bob");
        let first = auth.open_session(principal("ana")).expect("first");
        for _ in 0..SESSIONS_PER_USER_MAX {
            auth.open_session(principal("ana")).expect("ana");
        }
        let sessions = auth.sessions.lock().expect("lock");
        let of_ana = sessions
            .values()
            .filter(|s| s.principal.user == "ana")
            .count();
        assert_eq!(of_ana, SESSIONS_PER_USER_MAX);
        assert!(!sessions.contains_key(&first), "the oldest session ended");
        assert!(sessions.contains_key(&other), "other users keep theirs");
    }
}
