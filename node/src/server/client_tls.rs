//! The client listeners' (Flight SQL, admin) transport rules: TLS from `[listen.tls]`,
//! and no well-known demo password on an address other hosts can reach.

use std::path::Path;

use anyhow::{Context, bail};
use tonic::transport::{Certificate, Identity, ServerTlsConfig};

use crate::auth::{Authenticator, WELL_KNOWN_DEMO_PASSWORDS};
use crate::config::{ListenConfig, ListenTlsConfig, UserConfig};

fn read_pem(path: &Path, key: &str) -> anyhow::Result<Vec<u8>> {
    let bytes = crate::bounded_file::read(path, crate::limits::PEM_FILE_SIZE_MAX_BYTES)
        .with_context(|| format!("{key}: not a readable PEM certificate or key"))?;
    if !bytes.starts_with(b"-----BEGIN") && !String::from_utf8_lossy(&bytes).contains("-----BEGIN")
    {
        bail!("{key} {} holds no PEM block", path.display());
    }
    Ok(bytes)
}

/// The server TLS configuration of `[listen.tls]`: the certificate and key, and, when
/// `client_ca` is set, the CA whose certificates clients must present.
///
/// Errors: a file that cannot be read, is larger than 1 MiB or holds no PEM block
/// (naming the config key). A certificate and key that do not match are refused when
/// the listener is built (`Server::tls_config`).
pub(super) fn server_config(tls: &ListenTlsConfig) -> anyhow::Result<ServerTlsConfig> {
    let cert = read_pem(&tls.cert, "listen.tls.cert")?;
    let key = read_pem(&tls.key, "listen.tls.key")?;
    let mut config = ServerTlsConfig::new()
        .identity(Identity::from_pem(cert, key))
        .timeout(std::time::Duration::from_millis(
            crate::limits::CONNECTION_HANDSHAKE_MAX_MS,
        ));
    if let Some(ca) = &tls.client_ca {
        config =
            config.client_ca_root(Certificate::from_pem(read_pem(ca, "listen.tls.client_ca")?));
    }
    Ok(config)
}

/// Refuses to serve when a client listener is reachable from other hosts and some user
/// accepts a password published with Domicile (the demo's and the examples'): anyone who
/// read the README could log in, TLS or not.
///
/// Costs one argon2 verification per user and demo password, and only when a client
/// listener is off loopback.
pub(super) fn refuse_demo_passwords(
    listen: &ListenConfig,
    users: &[UserConfig],
    auth: &Authenticator,
) -> anyhow::Result<()> {
    let Some((key, address)) = listen
        .client_listeners()
        .into_iter()
        .find(|(_, address)| !address.ip().is_loopback())
    else {
        return Ok(());
    };
    for user in users {
        if WELL_KNOWN_DEMO_PASSWORDS
            .iter()
            .any(|password| auth.accepts_password_for(&user.name, password))
        {
            bail!(
                "user {} has a well-known demo password and {key} {address} is not a loopback \
                 address: set a real password (domicile hash-password) or listen on 127.0.0.1",
                user.name
            );
        }
    }
    Ok(())
}
