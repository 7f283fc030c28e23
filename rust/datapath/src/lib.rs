//! kubetrio's packet datapath: pure Rust, no Python. The pyo3 binding in `binding/`
//! exposes it to Python as `kubetrio._datapath`.
//!
//! - [`maglev`]: Maglev consistent-hash tables for the service proxy.
//! - [`packet`]: IPv4/UDP/TCP headers, VXLAN and IPIP encapsulation, batch encap/decap.
//! - [`lpm`]: longest-prefix match of IPv4 routes (pod CIDR → node).
//! - [`engine`]: the TUN tunnel engine (Linux): VXLAN/IPIP between a TUN device and the underlay.
//! - [`checksum`], [`hash`]: the Internet checksum and a seeded portable hash.
//! - [`error`]: the crate's one error type.

pub mod checksum;
#[cfg(target_os = "linux")]
pub mod engine;
pub mod error;
pub mod hash;
pub mod maglev;

pub use error::{Error, Result};
pub mod lpm;
pub mod packet;
