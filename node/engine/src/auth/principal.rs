use std::fmt;

use serde::{Deserialize, Serialize};

/// What a user may do. Ordered: each role includes the ones before it.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Role {
    /// SELECT, metadata.
    Reader,
    /// + INSERT, UPDATE, DELETE.
    Writer,
    /// + CREATE TABLE, DROP TABLE.
    Admin,
}

impl Role {
    pub fn parse(text: &str) -> Option<Role> {
        match text {
            "reader" => Some(Role::Reader),
            "writer" => Some(Role::Writer),
            "admin" => Some(Role::Admin),
            _ => None,
        }
    }
}

impl fmt::Display for Role {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Role::Reader => "reader",
            Role::Writer => "writer",
            Role::Admin => "admin",
        })
    }
}

/// An authenticated caller. `home_region` is where the caller's own data lives; residency
/// decisions about results leaving their region compare against it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Principal {
    pub user: String,
    pub role: Role,
    pub home_region: String,
    /// Jurisdictions whose plugins this user may upload, activate and roll back.
    pub compliance: Vec<String>,
}

impl Principal {
    /// The node's own background work (e.g. the CDC relay), as audit entries name it.
    /// It holds no role beyond reading: it is never resolved from a client's token.
    pub fn system(name: &str, region: &str) -> Self {
        Self {
            user: name.to_string(),
            role: Role::Reader,
            home_region: region.to_string(),
            compliance: Vec::new(),
        }
    }

    pub fn may(&self, needed: Role) -> bool {
        self.role >= needed
    }

    pub fn is_compliance_officer_for(&self, jurisdiction: &str) -> bool {
        self.compliance.iter().any(|j| j == jurisdiction)
    }
}
