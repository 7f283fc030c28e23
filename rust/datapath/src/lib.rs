//! kubetrio's packet datapath: pure Rust, no Python. The pyo3 binding in `binding/`
//! exposes it to Python as `kubetrio._datapath`.
//!
//! - [`maglev`]: Maglev consistent-hash tables for the service proxy.
//! - [`packet`]: IPv4/UDP/TCP headers, VXLAN and IPIP encapsulation, batch encap/decap.
//! - [`lpm`]: longest-prefix match of IPv4 routes (pod CIDR → node).
//! - [`checksum`], [`hash`]: the Internet checksum and a seeded portable hash.
//! - [`error`]: the crate's one error type.

pub mod checksum;
pub mod error;
pub mod hash;
pub mod maglev;

pub use error::{Error, Result};
pub mod lpm;
pub mod packet;
