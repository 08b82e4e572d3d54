//! Who is calling: users from config with argon2 password hashes, bearer tokens handed out
//! by the Flight SQL handshake, and roles.

mod principal;
mod sessions;
mod throttle;

pub use principal::{Principal, Role};
pub use sessions::{AuthError, Authenticator, SessionOptions, UserRecord, hash_password};
pub use throttle::LoginRefusals;
