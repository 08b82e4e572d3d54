//! The mesh's certificates: one cluster CA; one certificate per node whose only names
//! are its region's mesh name (`<region>.nodes.domicile.mesh`). A caller connecting to
//! a peer of region R checks the server's certificate against that name, so a node
//! presenting another region's certificate is refused by TLS itself; a server reads the
//! region from the client certificate the same way (`region_of`).

use rcgen::{
    BasicConstraints, CertificateParams, DnType, ExtendedKeyUsagePurpose, IsCa, Issuer, KeyPair,
    KeyUsagePurpose,
};

const MESH_DOMAIN: &str = "nodes.domicile.mesh";

/// The certificate name of region `region`'s node.
pub fn dns_name(region: &str) -> String {
    format!("{region}.{MESH_DOMAIN}")
}

/// PEM text of a certificate and its private key.
pub struct Issued {
    pub cert_pem: String,
    pub key_pem: String,
}

/// A new cluster CA, valid for ten years from now.
pub fn new_ca() -> Result<Issued, rcgen::Error> {
    let key = KeyPair::generate()?;
    let mut params = CertificateParams::new(Vec::<String>::new())?;
    params.is_ca = IsCa::Ca(BasicConstraints::Constrained(0));
    params
        .distinguished_name
        .push(DnType::CommonName, "Domicile mesh CA");
    params.key_usages = vec![KeyUsagePurpose::KeyCertSign, KeyUsagePurpose::CrlSign];
    params.not_after = rcgen::date_time_ymd(this_year() + 10, 1, 1);
    let cert = params.self_signed(&key)?;
    Ok(Issued {
        cert_pem: cert.pem(),
        key_pem: key.serialize_pem(),
    })
}

/// The current year (UTC, to within a day: certificates expire on a 1 January).
fn this_year() -> i32 {
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_secs());
    1970 + i32::try_from(now / 31_556_952).unwrap_or(0)
}

/// A certificate for the node of `region`, signed by the CA, for both serving and
/// calling peers.
pub fn new_node_cert(ca: &Issued, region: &str) -> Result<Issued, rcgen::Error> {
    let ca_key = KeyPair::from_pem(&ca.key_pem)?;
    let issuer = Issuer::from_ca_cert_pem(&ca.cert_pem, ca_key)?;
    let key = KeyPair::generate()?;
    let mut params = CertificateParams::new(vec![dns_name(region)])?;
    params
        .distinguished_name
        .push(DnType::CommonName, format!("domicile node {region}"));
    params.extended_key_usages = vec![
        ExtendedKeyUsagePurpose::ServerAuth,
        ExtendedKeyUsagePurpose::ClientAuth,
    ];
    params.not_after = rcgen::date_time_ymd(this_year() + 2, 1, 1);
    let cert = params.signed_by(&key, &issuer)?;
    Ok(Issued {
        cert_pem: cert.pem(),
        key_pem: key.serialize_pem(),
    })
}

/// A server certificate for the client listeners (`[listen.tls]`), signed by the CA in
/// `ca`, naming `names` (DNS names, or IP addresses as IP SANs) and valid for serving
/// only: it cannot be used as a mesh node's client certificate, and it names no region,
/// so peers refuse it (`region_of` is `None`).
///
/// Errors: no names or a mesh name (`InvalidNameType`), a name that is not a valid DNS
/// name or IP address, or a CA that cannot be parsed.
pub fn new_server_cert(ca: &Issued, names: &[String]) -> Result<Issued, rcgen::Error> {
    // A mesh name on a client-facing certificate would blur the two trusts; a node's
    // mesh certificate comes from `new_node_cert` only.
    if names.is_empty() || names.iter().any(|n| n.ends_with(MESH_DOMAIN)) {
        return Err(rcgen::Error::InvalidNameType);
    }
    let ca_key = KeyPair::from_pem(&ca.key_pem)?;
    let issuer = Issuer::from_ca_cert_pem(&ca.cert_pem, ca_key)?;
    let key = KeyPair::generate()?;
    let mut params = CertificateParams::new(names.to_vec())?;
    params
        .distinguished_name
        .push(DnType::CommonName, format!("domicile {}", names[0]));
    params.extended_key_usages = vec![ExtendedKeyUsagePurpose::ServerAuth];
    params.not_after = rcgen::date_time_ymd(this_year() + 2, 1, 1);
    let cert = params.signed_by(&key, &issuer)?;
    Ok(Issued {
        cert_pem: cert.pem(),
        key_pem: key.serialize_pem(),
    })
}

/// The region a (CA-verified) certificate names, if it names exactly one.
pub fn region_of(der: &[u8]) -> Option<String> {
    let (_, cert) = x509_parser::parse_x509_certificate(der).ok()?;
    let names = cert.subject_alternative_name().ok()??;
    let mut regions = names
        .value
        .general_names
        .iter()
        .filter_map(|name| match name {
            x509_parser::extensions::GeneralName::DNSName(dns) => dns
                .strip_suffix(MESH_DOMAIN)
                .and_then(|r| r.strip_suffix('.'))
                .map(str::to_string),
            _ => None,
        });
    let region = regions.next()?;
    regions.next().is_none().then_some(region)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_node_certificate_names_exactly_its_region() {
        let ca = new_ca().expect("ca");
        let node = new_node_cert(&ca, "eu-central").expect("node cert");
        let der = pem_to_der(&node.cert_pem);
        assert_eq!(region_of(&der).as_deref(), Some("eu-central"));
        assert_eq!(
            region_of(&pem_to_der(&ca.cert_pem)),
            None,
            "the CA names no region"
        );
        assert_eq!(region_of(b"garbage"), None);
    }

    #[test]
    fn a_server_certificate_names_hosts_and_no_region() {
        let ca = new_ca().expect("ca");
        let names = ["127.0.0.1".to_string(), "db.example.com".to_string()];
        let server = new_server_cert(&ca, &names).expect("server cert");
        let der = pem_to_der(&server.cert_pem);
        assert_eq!(region_of(&der), None, "a client listener's certificate");
        let (_, cert) = x509_parser::parse_x509_certificate(&der).expect("x509");
        let sans = cert
            .subject_alternative_name()
            .expect("san")
            .expect("present")
            .value
            .general_names
            .iter()
            .map(|name| format!("{name:?}"))
            .collect::<Vec<_>>()
            .join(" ");
        assert!(
            sans.contains("IPAddress") && sans.contains("db.example.com"),
            "{sans}"
        );
        let eku = cert.extended_key_usage().expect("eku").expect("present");
        assert!(eku.value.server_auth && !eku.value.client_auth);
        assert!(new_server_cert(&ca, &[]).is_err());
        assert!(new_server_cert(&ca, &[dns_name("eu-central")]).is_err());
    }

    fn pem_to_der(pem: &str) -> Vec<u8> {
        use base64::Engine;
        let body: String = pem.lines().filter(|l| !l.starts_with("-----")).collect();
        base64::engine::general_purpose::STANDARD
            .decode(body)
            .expect("base64")
    }
}
