//! kubetrio's packet datapath: pure Rust, no Python. The pyo3 binding in `binding/`
//! exposes it to Python as `kubetrio._datapath`.

pub mod checksum;
