//! pyo3 binding of `kubetrio-datapath`, imported from Python as `kubetrio._datapath`.
//! Keep this layer thin: conversion and GIL handling only; the work lives in the pure crate.

use pyo3::prelude::*;

/// Internet checksum (RFC 1071) of a bytes-like object.
#[pyfunction]
fn internet_checksum(data: &[u8]) -> u16 {
    kubetrio_datapath::checksum::internet_checksum(data)
}

#[pymodule]
fn _datapath(m: &Bound<'_, PyModule>) -> PyResult<()> {
    m.add("__version__", env!("CARGO_PKG_VERSION"))?;
    m.add_function(wrap_pyfunction!(internet_checksum, m)?)?;
    Ok(())
}
