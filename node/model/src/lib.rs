//! Domicile's plain types, shared by every other crate of the node and depending on
//! none of them: what tables exist and what their columns mean to the law (`catalog`),
//! every bound with its unit (`limits`), time and backoff (`clock`), who a client is
//! by its address (`client_address`), the kinds of failure every protocol answers
//! (`error_kind`), and reads of files from outside the process
//! (`bounded_file`). No storage engine, no SQL engine, no network: this crate builds
//! with a SQL parser, serde and rand only.

pub mod bounded_file;
pub mod catalog;
pub mod client_address;
pub mod clock;
pub mod error_kind;
pub mod limits;
