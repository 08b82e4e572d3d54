//! Who is calling: users from config with argon2 password hashes, bearer tokens handed out
//! by the Flight SQL handshake, and roles.

mod principal;
mod sessions;
mod throttle;

pub use principal::{Principal, Role};
pub use sessions::{AuthError, Authenticator, SessionOptions, UserRecord, hash_password};
pub use throttle::LoginRefusals;

/// The demo's and the example config's passwords (`admin` for the admin user,
/// `analyst` for the demo's reader). They are public, so a node whose users accept any
/// of them serves its client listeners on loopback only.
pub const DEMO_ADMIN_PASSWORD: &str = "admin";
/// See [`DEMO_ADMIN_PASSWORD`].
pub const DEMO_ANALYST_PASSWORD: &str = "analyst";
/// Every password in the demo and the examples; see [`DEMO_ADMIN_PASSWORD`].
pub const WELL_KNOWN_DEMO_PASSWORDS: [&str; 2] = [DEMO_ADMIN_PASSWORD, DEMO_ANALYST_PASSWORD];
