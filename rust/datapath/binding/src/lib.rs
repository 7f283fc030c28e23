//! pyo3 binding of `kubetrio-datapath`, imported from Python as `kubetrio._datapath`.
//! Keep this layer thin: conversion and GIL handling only; the work lives in the pure crate.
//! Python code reaches it through `kubetrio.datapath`, which adds types and documentation.

mod buffers;

use buffers::{check_disjoint, release_gil, with_bytes, View};
use kubetrio_datapath::packet::batch::{self, BatchStats, Encapsulation, TunnelKind};
use kubetrio_datapath::packet::{ipip, tcp, udp, vxlan, Ipv4Header as RsIpv4Header};
use kubetrio_datapath::{checksum, engine, hash, lpm, maglev, Error};
use pyo3::buffer::PyBuffer;
use pyo3::create_exception;
use pyo3::exceptions::PyValueError;
use pyo3::prelude::*;
use pyo3::types::PyBytes;

create_exception!(
    _datapath,
    DatapathError,
    PyValueError,
    "Base class of datapath errors (a ValueError)."
);
create_exception!(
    _datapath,
    MalformedPacketError,
    DatapathError,
    "A packet was truncated, malformed, failed its checksum or is not supported."
);

/// The one conversion from the crate's error to a Python exception.
fn to_py(e: Error) -> PyErr {
    if e.is_packet_error() {
        MalformedPacketError::new_err(e.to_string())
    } else {
        DatapathError::new_err(e.to_string())
    }
}

// ---------------------------------------------------------------- checksums and hashes

/// Internet checksum (RFC 1071) of a bytes-like object.
#[pyfunction]
fn internet_checksum(data: &Bound<'_, PyAny>) -> PyResult<u16> {
    with_bytes(data, checksum::internet_checksum)
}

/// New checksum after a 16-bit field changes from `old` to `new` (RFC 1624).
#[pyfunction]
fn checksum_adjust16(checksum: u16, old: u16, new: u16) -> u16 {
    checksum::adjust16(checksum, old, new)
}

/// New checksum after a 32-bit field (an IPv4 address) changes from `old` to `new`.
#[pyfunction]
fn checksum_adjust32(checksum: u16, old: u32, new: u32) -> u16 {
    checksum::adjust32(checksum, old, new)
}

/// Seeded, platform-independent 64-bit hash of a bytes-like object.
#[pyfunction]
#[pyo3(signature = (data, seed = 0))]
fn hash64(data: &Bound<'_, PyAny>, seed: u64) -> PyResult<u64> {
    with_bytes(data, |d| hash::hash64(d, seed))
}

/// Hash of an IPv4 5-tuple (addresses as integers).
#[pyfunction]
#[pyo3(signature = (src, dst, src_port, dst_port, protocol, seed = 0))]
fn flow_hash(src: u32, dst: u32, src_port: u16, dst_port: u16, protocol: u8, seed: u64) -> u64 {
    hash::flow_hash(src, dst, src_port, dst_port, protocol, seed)
}

/// Flow hash of an IPv4 packet (5-tuple when it parses).
#[pyfunction]
#[pyo3(signature = (packet, seed = 0))]
fn packet_flow_hash(packet: &Bound<'_, PyAny>, seed: u64) -> PyResult<u64> {
    with_bytes(packet, |p| {
        kubetrio_datapath::packet::ipv4_flow_hash(p, seed)
    })
}

// ---------------------------------------------------------------- Maglev

/// A Maglev consistent-hash table.
#[pyclass(module = "kubetrio._datapath", frozen)]
struct Maglev {
    inner: maglev::Maglev,
}

#[pymethods]
impl Maglev {
    #[new]
    #[pyo3(signature = (backends, weights = None, size = 65537, seed = 0))]
    fn new(
        py: Python<'_>,
        backends: Vec<String>,
        weights: Option<Vec<u32>>,
        size: u32,
        seed: u64,
    ) -> PyResult<Self> {
        let inner = release_gil(py, move || {
            maglev::Maglev::new(backends, weights, size, seed)
        })?
        .map_err(to_py)?;
        Ok(Maglev { inner })
    }

    /// Number of slots.
    #[getter]
    fn size(&self) -> u32 {
        self.inner.size()
    }

    /// Seed of the permutation hashes.
    #[getter]
    fn seed(&self) -> u64 {
        self.inner.seed()
    }

    /// Backend names in index order.
    #[getter]
    fn backends(&self) -> Vec<String> {
        self.inner.backends().to_vec()
    }

    /// Backend weights in index order.
    #[getter]
    fn weights(&self) -> Vec<u32> {
        self.inner.weights().to_vec()
    }

    /// Slot → backend index, as a list.
    fn table(&self) -> Vec<u32> {
        self.inner.table().to_vec()
    }

    /// Slot → backend index as little-endian uint32 bytes (for `array('I')`/numpy).
    fn table_bytes<'py>(&self, py: Python<'py>) -> Bound<'py, PyBytes> {
        let t = self.inner.table();
        PyBytes::new_with(py, t.len() * 4, |b| {
            for (chunk, v) in b.chunks_exact_mut(4).zip(t) {
                chunk.copy_from_slice(&v.to_le_bytes());
            }
            Ok(())
        })
        .expect("filling a fresh bytes object cannot fail")
    }

    /// Backend index for a flow hash.
    fn lookup(&self, flow_hash: u64) -> u32 {
        self.inner.lookup(flow_hash)
    }

    /// Backend indices for a buffer of uint64 hashes, written to a uint32 buffer.
    fn lookup_batch(
        &self,
        py: Python<'_>,
        hashes: PyBuffer<u64>,
        out: PyBuffer<u32>,
    ) -> PyResult<()> {
        let h = View::of(&hashes, "hashes")?;
        let mut o = View::of_mut(&out, "out")?;
        check_disjoint(&[&h, &o])?;
        let t = &self.inner;
        // SAFETY: both PyBuffers outlive the call; the views are disjoint.
        release_gil(py, move || unsafe {
            t.lookup_batch(h.slice(), o.slice_mut())
        })?
        .map_err(to_py)
    }

    /// Number of slots held by each backend.
    fn slot_counts(&self) -> Vec<u32> {
        self.inner.slot_counts()
    }

    /// Slots whose backend name differs in `new`: (slot, old index, new index).
    fn diff(&self, py: Python<'_>, new: PyRef<'_, Maglev>) -> PyResult<Vec<(u32, u32, u32)>> {
        let (a, b) = (&self.inner, &new.inner);
        release_gil(py, move || a.diff(b))?
            .map(|v| v.into_iter().map(|c| (c.slot, c.old, c.new)).collect())
            .map_err(to_py)
    }
}

/// True if `n` is prime (valid Maglev table size).
#[pyfunction]
fn is_prime(n: u32) -> bool {
    maglev::is_prime(n)
}

// ---------------------------------------------------------------- headers

/// A parsed IPv4 header.
#[pyclass(module = "kubetrio._datapath", frozen, get_all)]
struct Ipv4Header {
    /// Header length in bytes.
    header_len: usize,
    /// DSCP/ECN byte.
    tos: u8,
    /// Total length.
    total_len: u16,
    /// Identification.
    ident: u16,
    /// Flags and fragment offset.
    flags_fragment: u16,
    /// Time to live.
    ttl: u8,
    /// Payload protocol.
    protocol: u8,
    /// Header checksum.
    checksum: u16,
    /// Source address as an integer.
    src: u32,
    /// Destination address as an integer.
    dst: u32,
}

impl From<RsIpv4Header> for Ipv4Header {
    fn from(h: RsIpv4Header) -> Self {
        Ipv4Header {
            header_len: h.header_len(),
            tos: h.tos,
            total_len: h.total_len,
            ident: h.ident,
            flags_fragment: h.flags_fragment,
            ttl: h.ttl,
            protocol: h.protocol,
            checksum: h.checksum,
            src: h.src,
            dst: h.dst,
        }
    }
}

#[pymethods]
impl Ipv4Header {
    fn __repr__(&self) -> String {
        format!(
            "Ipv4Header(src={}, dst={}, protocol={}, total_len={}, ttl={})",
            std::net::Ipv4Addr::from(self.src),
            std::net::Ipv4Addr::from(self.dst),
            self.protocol,
            self.total_len,
            self.ttl
        )
    }
}

/// Parses an IPv4 header, verifying its checksum unless `verify_checksum` is false.
#[pyfunction]
#[pyo3(signature = (packet, verify_checksum = true))]
fn parse_ipv4(packet: &Bound<'_, PyAny>, verify_checksum: bool) -> PyResult<Ipv4Header> {
    with_bytes(packet, |p| {
        if verify_checksum {
            RsIpv4Header::parse_checked(p)
        } else {
            RsIpv4Header::parse(p)
        }
    })?
    .map(Ipv4Header::from)
    .map_err(to_py)
}

/// Parses an IPv4/UDP packet: (ip header, src port, dst port, payload offset, payload length).
#[pyfunction]
fn parse_udp(packet: &Bound<'_, PyAny>) -> PyResult<(Ipv4Header, u16, u16, usize, usize)> {
    let d = with_bytes(packet, udp::parse_udp_datagram)?.map_err(to_py)?;
    Ok((
        d.ip.into(),
        d.udp.src_port,
        d.udp.dst_port,
        d.payload_offset,
        d.payload_len,
    ))
}

/// Parses an IPv4/TCP packet: (ip header, src port, dst port, seq, ack, flags, payload
/// offset, payload length).
#[pyfunction]
#[allow(clippy::type_complexity)]
fn parse_tcp(
    packet: &Bound<'_, PyAny>,
) -> PyResult<(Ipv4Header, u16, u16, u32, u32, u8, usize, usize)> {
    let s = with_bytes(packet, tcp::parse_tcp_segment)?.map_err(to_py)?;
    Ok((
        s.ip.into(),
        s.tcp.src_port,
        s.tcp.dst_port,
        s.tcp.seq,
        s.tcp.ack,
        s.tcp.flags,
        s.payload_offset,
        s.payload_len,
    ))
}

/// Builds an IPv4/UDP packet with valid checksums.
#[pyfunction]
#[pyo3(signature = (src, dst, src_port, dst_port, payload, ttl = 64))]
fn build_udp<'py>(
    py: Python<'py>,
    src: u32,
    dst: u32,
    src_port: u16,
    dst_port: u16,
    payload: &Bound<'py, PyAny>,
    ttl: u8,
) -> PyResult<Bound<'py, PyBytes>> {
    let mut out = vec![0u8; 28 + payload.len()?];
    let n = with_bytes(payload, |p| {
        udp::build_udp_datagram(src, dst, src_port, dst_port, p, ttl, &mut out)
    })?
    .map_err(to_py)?;
    Ok(PyBytes::new(py, &out[..n]))
}

/// Builds an IPv4/TCP packet (no options) with valid checksums.
#[pyfunction]
#[pyo3(signature = (src, dst, src_port, dst_port, payload, *, seq = 0, ack = 0, flags = 0x18, window = 65535, ttl = 64))]
#[allow(clippy::too_many_arguments)]
fn build_tcp<'py>(
    py: Python<'py>,
    src: u32,
    dst: u32,
    src_port: u16,
    dst_port: u16,
    payload: &Bound<'py, PyAny>,
    seq: u32,
    ack: u32,
    flags: u8,
    window: u16,
    ttl: u8,
) -> PyResult<Bound<'py, PyBytes>> {
    let h = tcp::TcpHeader {
        src_port,
        dst_port,
        seq,
        ack,
        data_offset: 5,
        flags,
        window,
        checksum: 0,
        urgent: 0,
    };
    let mut out = vec![0u8; 40 + payload.len()?];
    let n = with_bytes(payload, |p| {
        tcp::build_tcp_segment(src, dst, &h, p, ttl, &mut out)
    })?
    .map_err(to_py)?;
    Ok(PyBytes::new(py, &out[..n]))
}

// ---------------------------------------------------------------- tunnels

/// Runs a batch encapsulation with the GIL released.
#[allow(clippy::too_many_arguments)]
fn run_encap_batch<E: Encapsulation + Sync>(
    py: Python<'_>,
    enc: &E,
    src: PyBuffer<u8>,
    src_stride: usize,
    src_lengths: PyBuffer<u32>,
    dst: PyBuffer<u8>,
    dst_stride: usize,
    dst_lengths: PyBuffer<u32>,
    first_ident: u16,
) -> PyResult<(usize, usize)> {
    let s = View::of(&src, "src")?;
    let sl = View::of(&src_lengths, "src_lengths")?;
    let mut d = View::of_mut(&dst, "dst")?;
    let mut dl = View::of_mut(&dst_lengths, "dst_lengths")?;
    check_disjoint(&[&s, &sl, &d, &dl])?;
    // SAFETY: the four PyBuffers live until this function returns; views are disjoint.
    let r = release_gil(py, move || unsafe {
        batch::encap_batch(
            enc,
            s.slice(),
            src_stride,
            sl.slice(),
            d.slice_mut(),
            dst_stride,
            dl.slice_mut(),
            first_ident,
        )
    })?;
    let BatchStats { ok, dropped } = r.map_err(to_py)?;
    Ok((ok, dropped))
}

/// VXLAN encapsulation towards one remote VTEP.
#[pyclass(module = "kubetrio._datapath", frozen)]
struct VxlanEncap {
    inner: vxlan::VxlanEncap,
}

#[pymethods]
impl VxlanEncap {
    #[new]
    #[pyo3(signature = (local, remote, vni, dst_port = 4789, ttl = 64))]
    fn new(local: u32, remote: u32, vni: u32, dst_port: u16, ttl: u8) -> PyResult<Self> {
        let inner = vxlan::VxlanEncap::new(local, remote, vni, dst_port, ttl).map_err(to_py)?;
        Ok(VxlanEncap { inner })
    }

    /// Outer source address.
    #[getter]
    fn local(&self) -> u32 {
        self.inner.local
    }

    /// Outer destination address.
    #[getter]
    fn remote(&self) -> u32 {
        self.inner.remote
    }

    /// VXLAN network identifier.
    #[getter]
    fn vni(&self) -> u32 {
        self.inner.vni
    }

    /// Outer UDP destination port.
    #[getter]
    fn dst_port(&self) -> u16 {
        self.inner.dst_port
    }

    /// Outer TTL.
    #[getter]
    fn ttl(&self) -> u8 {
        self.inner.ttl
    }

    /// Encapsulates one Ethernet frame.
    #[pyo3(signature = (frame, ident = 0))]
    fn encap<'py>(
        &self,
        py: Python<'py>,
        frame: &Bound<'py, PyAny>,
        ident: u16,
    ) -> PyResult<Bound<'py, PyBytes>> {
        let mut out = vec![0u8; vxlan::VXLAN_OVERHEAD + frame.len()?];
        let n = with_bytes(frame, |f| self.inner.encap(f, ident, &mut out))?.map_err(to_py)?;
        Ok(PyBytes::new(py, &out[..n]))
    }

    /// Encapsulates one IPv4 packet, adding an Ethernet header with the given MACs.
    #[pyo3(signature = (packet, src_mac, dst_mac, ident = 0))]
    fn encap_ipv4<'py>(
        &self,
        py: Python<'py>,
        packet: &Bound<'py, PyAny>,
        src_mac: [u8; 6],
        dst_mac: [u8; 6],
        ident: u16,
    ) -> PyResult<Bound<'py, PyBytes>> {
        let mut out = vec![0u8; vxlan::VXLAN_OVERHEAD + 14 + packet.len()?];
        let n = with_bytes(packet, |p| {
            self.inner.encap_ipv4(p, src_mac, dst_mac, ident, &mut out)
        })?
        .map_err(to_py)?;
        Ok(PyBytes::new(py, &out[..n]))
    }

    /// Encapsulates a fixed-stride batch; returns (ok, dropped).
    #[pyo3(signature = (src, src_stride, src_lengths, dst, dst_stride, dst_lengths, first_ident = 0))]
    #[allow(clippy::too_many_arguments)]
    fn encap_batch(
        &self,
        py: Python<'_>,
        src: PyBuffer<u8>,
        src_stride: usize,
        src_lengths: PyBuffer<u32>,
        dst: PyBuffer<u8>,
        dst_stride: usize,
        dst_lengths: PyBuffer<u32>,
        first_ident: u16,
    ) -> PyResult<(usize, usize)> {
        run_encap_batch(
            py,
            &self.inner,
            src,
            src_stride,
            src_lengths,
            dst,
            dst_stride,
            dst_lengths,
            first_ident,
        )
    }
}

/// IPIP (RFC 2003) encapsulation towards one remote node.
#[pyclass(module = "kubetrio._datapath", frozen)]
struct IpipEncap {
    inner: ipip::IpipEncap,
}

#[pymethods]
impl IpipEncap {
    #[new]
    #[pyo3(signature = (local, remote, ttl = 64))]
    fn new(local: u32, remote: u32, ttl: u8) -> Self {
        IpipEncap {
            inner: ipip::IpipEncap { local, remote, ttl },
        }
    }

    /// Outer source address.
    #[getter]
    fn local(&self) -> u32 {
        self.inner.local
    }

    /// Outer destination address.
    #[getter]
    fn remote(&self) -> u32 {
        self.inner.remote
    }

    /// Outer TTL.
    #[getter]
    fn ttl(&self) -> u8 {
        self.inner.ttl
    }

    /// Encapsulates one IPv4 packet.
    #[pyo3(signature = (packet, ident = 0))]
    fn encap<'py>(
        &self,
        py: Python<'py>,
        packet: &Bound<'py, PyAny>,
        ident: u16,
    ) -> PyResult<Bound<'py, PyBytes>> {
        let mut out = vec![0u8; ipip::IPIP_OVERHEAD + packet.len()?];
        let n = with_bytes(packet, |p| self.inner.encap(p, ident, &mut out))?.map_err(to_py)?;
        Ok(PyBytes::new(py, &out[..n]))
    }

    /// Encapsulates a fixed-stride batch; returns (ok, dropped).
    #[pyo3(signature = (src, src_stride, src_lengths, dst, dst_stride, dst_lengths, first_ident = 0))]
    #[allow(clippy::too_many_arguments)]
    fn encap_batch(
        &self,
        py: Python<'_>,
        src: PyBuffer<u8>,
        src_stride: usize,
        src_lengths: PyBuffer<u32>,
        dst: PyBuffer<u8>,
        dst_stride: usize,
        dst_lengths: PyBuffer<u32>,
        first_ident: u16,
    ) -> PyResult<(usize, usize)> {
        run_encap_batch(
            py,
            &self.inner,
            src,
            src_stride,
            src_lengths,
            dst,
            dst_stride,
            dst_lengths,
            first_ident,
        )
    }
}

/// Copies a fixed-stride batch into another (each packet at `dst_offset` in its slot);
/// returns (ok, dropped). The baseline for encapsulation throughput.
#[pyfunction]
#[pyo3(signature = (src, src_stride, src_lengths, dst, dst_stride, dst_lengths, dst_offset = 0))]
#[allow(clippy::too_many_arguments)]
fn copy_batch(
    py: Python<'_>,
    src: PyBuffer<u8>,
    src_stride: usize,
    src_lengths: PyBuffer<u32>,
    dst: PyBuffer<u8>,
    dst_stride: usize,
    dst_lengths: PyBuffer<u32>,
    dst_offset: usize,
) -> PyResult<(usize, usize)> {
    let s = View::of(&src, "src")?;
    let sl = View::of(&src_lengths, "src_lengths")?;
    let mut d = View::of_mut(&dst, "dst")?;
    let mut dl = View::of_mut(&dst_lengths, "dst_lengths")?;
    check_disjoint(&[&s, &sl, &d, &dl])?;
    // SAFETY: the four PyBuffers live until this function returns; views are disjoint.
    let r = release_gil(py, move || unsafe {
        batch::copy_batch(
            s.slice(),
            src_stride,
            sl.slice(),
            d.slice_mut(),
            dst_stride,
            dl.slice_mut(),
            dst_offset,
        )
    })?;
    let BatchStats { ok, dropped } = r.map_err(to_py)?;
    Ok((ok, dropped))
}

/// Decapsulates one VXLAN packet: (vni, inner offset, inner length).
#[pyfunction]
fn vxlan_decap(packet: &Bound<'_, PyAny>) -> PyResult<(u32, usize, usize)> {
    let d = with_bytes(packet, vxlan::vxlan_decap)?.map_err(to_py)?;
    Ok((d.vni, d.inner_offset, d.inner_len))
}

/// Decapsulates one IPIP packet: (outer source, inner offset, inner length).
#[pyfunction]
fn ipip_decap(packet: &Bound<'_, PyAny>) -> PyResult<(u32, usize, usize)> {
    let d = with_bytes(packet, ipip::ipip_decap)?.map_err(to_py)?;
    Ok((d.outer.src, d.inner_offset, d.inner_len))
}

/// Decapsulates a fixed-stride batch without copying; returns (ok, dropped).
#[pyfunction]
#[allow(clippy::too_many_arguments)]
fn decap_batch(
    py: Python<'_>,
    kind: &str,
    src: PyBuffer<u8>,
    src_stride: usize,
    src_lengths: PyBuffer<u32>,
    offsets: PyBuffer<u32>,
    inner_lengths: PyBuffer<u32>,
    tags: PyBuffer<u32>,
) -> PyResult<(usize, usize)> {
    let kind = match kind {
        "vxlan" => TunnelKind::Vxlan,
        "ipip" => TunnelKind::Ipip,
        other => {
            return Err(PyValueError::new_err(format!(
                "kind must be 'vxlan' or 'ipip', not {other:?}"
            )))
        }
    };
    let s = View::of(&src, "src")?;
    let sl = View::of(&src_lengths, "src_lengths")?;
    let mut o = View::of_mut(&offsets, "offsets")?;
    let mut il = View::of_mut(&inner_lengths, "inner_lengths")?;
    let mut t = View::of_mut(&tags, "tags")?;
    check_disjoint(&[&s, &sl, &o, &il, &t])?;
    // SAFETY: all PyBuffers live until this function returns; views are disjoint.
    let r = release_gil(py, move || unsafe {
        batch::decap_batch(
            kind,
            s.slice(),
            src_stride,
            sl.slice(),
            o.slice_mut(),
            il.slice_mut(),
            t.slice_mut(),
        )
    })?;
    let BatchStats { ok, dropped } = r.map_err(to_py)?;
    Ok((ok, dropped))
}

// ---------------------------------------------------------------- LPM

/// IPv4 longest-prefix-match table of prefixes → integer values.
#[pyclass(module = "kubetrio._datapath")]
struct PrefixTable {
    inner: lpm::PrefixTable,
}

#[pymethods]
impl PrefixTable {
    #[new]
    fn new() -> Self {
        PrefixTable {
            inner: lpm::PrefixTable::new(),
        }
    }

    /// Adds or replaces `prefix/length`; returns the replaced value.
    fn insert(&mut self, prefix: u32, length: u8, value: u32) -> PyResult<Option<u32>> {
        self.inner.insert(prefix, length, value).map_err(to_py)
    }

    /// Removes `prefix/length`; returns its value if present.
    fn remove(&mut self, prefix: u32, length: u8) -> PyResult<Option<u32>> {
        self.inner.remove(prefix, length).map_err(to_py)
    }

    /// Value of the longest prefix containing `addr`.
    fn lookup(&self, addr: u32) -> Option<u32> {
        self.inner.lookup(addr)
    }

    /// Longest matching route as (prefix, length, value).
    fn lookup_route(&self, addr: u32) -> Option<(u32, u8, u32)> {
        self.inner
            .lookup_route(addr)
            .map(|r| (r.prefix, r.len, r.value))
    }

    /// Looks up a uint32 buffer of addresses into a uint32 buffer; `miss` where none match.
    #[pyo3(signature = (addrs, out, miss = 4294967295))]
    fn lookup_batch(
        &self,
        py: Python<'_>,
        addrs: PyBuffer<u32>,
        out: PyBuffer<u32>,
        miss: u32,
    ) -> PyResult<()> {
        let a = View::of(&addrs, "addrs")?;
        let mut o = View::of_mut(&out, "out")?;
        check_disjoint(&[&a, &o])?;
        let t = &self.inner;
        // SAFETY: both PyBuffers outlive the call; the views are disjoint.
        release_gil(py, move || unsafe {
            t.lookup_batch(a.slice(), o.slice_mut(), miss)
        })?
        .map_err(to_py)
    }

    /// All routes as (prefix, length, value), by length then prefix.
    fn routes(&self) -> Vec<(u32, u8, u32)> {
        self.inner
            .routes()
            .into_iter()
            .map(|r| (r.prefix, r.len, r.value))
            .collect()
    }

    fn __len__(&self) -> usize {
        self.inner.len()
    }
}

// ---------------------------------------------------------------- tunnel engine

/// TUN ⇄ underlay tunnel engine (VXLAN over UDP or IPIP over a raw socket) on Rust threads.
/// Frozen and `Sync`: stats and routes may be used from any thread while another starts
/// or stops the engine.
#[pyclass(module = "kubetrio._datapath", frozen)]
struct TunnelEngine {
    inner: engine::TunnelEngine,
}

#[pymethods]
impl TunnelEngine {
    #[new]
    #[pyo3(signature = (mode, tun_name, local, *, vni = 1, port = 4789, netns = None, batch = 64, ttl = 64, offload = true, outer_fragments = true, gro_send = false))]
    #[allow(clippy::too_many_arguments)]
    fn new(
        mode: &str,
        tun_name: String,
        local: u32,
        vni: u32,
        port: u16,
        netns: Option<String>,
        batch: usize,
        ttl: u8,
        offload: bool,
        outer_fragments: bool,
        gro_send: bool,
    ) -> PyResult<Self> {
        let mode = match mode {
            "vxlan" => engine::TunnelMode::Vxlan { vni, port },
            "ipip" => engine::TunnelMode::Ipip,
            other => {
                return Err(PyValueError::new_err(format!(
                    "mode must be 'vxlan' or 'ipip', not {other:?}"
                )))
            }
        };
        let inner = engine::TunnelEngine::new(engine::EngineConfig {
            tun_name,
            mode,
            local,
            netns,
            batch,
            ttl,
            offload,
            outer_fragments,
            gro_send,
        })
        .map_err(to_py)?;
        Ok(TunnelEngine { inner })
    }

    /// Opens the TUN device and socket and starts the worker threads.
    fn start(&self, py: Python<'_>) -> PyResult<()> {
        let e = &self.inner;
        release_gil(py, move || e.start())?.map_err(to_py)
    }

    /// Stops the threads and closes the descriptors (returns within about 100 ms).
    fn stop(&self, py: Python<'_>) -> PyResult<()> {
        let e = &self.inner;
        release_gil(py, move || e.stop())
    }

    /// True while the worker threads run.
    #[getter]
    fn running(&self) -> bool {
        self.inner.is_running()
    }

    /// Routes `prefix/length` to the node at underlay address `remote`.
    fn add_route(&self, prefix: u32, length: u8, remote: u32) -> PyResult<Option<u32>> {
        self.inner.add_route(prefix, length, remote).map_err(to_py)
    }

    /// Removes the route `prefix/length`.
    fn remove_route(&self, prefix: u32, length: u8) -> PyResult<Option<u32>> {
        self.inner.remove_route(prefix, length).map_err(to_py)
    }

    /// Counters: tx/rx packets, bytes, batches, drops and errors.
    fn stats(&self) -> std::collections::BTreeMap<&'static str, u64> {
        let s = self.inner.stats();
        [
            ("tx_packets", s.tx_packets),
            ("tx_bytes", s.tx_bytes),
            ("tx_batches", s.tx_batches),
            ("tx_no_route", s.tx_no_route),
            ("tx_errors", s.tx_errors),
            ("tx_aggregates", s.tx_aggregates),
            ("rx_packets", s.rx_packets),
            ("rx_bytes", s.rx_bytes),
            ("rx_batches", s.rx_batches),
            ("rx_malformed", s.rx_malformed),
            ("rx_errors", s.rx_errors),
            ("rx_aggregates", s.rx_aggregates),
        ]
        .into_iter()
        .collect()
    }
}

#[pymodule]
fn _datapath(m: &Bound<'_, PyModule>) -> PyResult<()> {
    let py = m.py();
    m.add("__version__", env!("CARGO_PKG_VERSION"))?;
    m.add("DatapathError", py.get_type::<DatapathError>())?;
    m.add(
        "MalformedPacketError",
        py.get_type::<MalformedPacketError>(),
    )?;
    m.add("DEFAULT_TABLE_SIZE", maglev::DEFAULT_TABLE_SIZE)?;
    m.add("VXLAN_PORT", vxlan::VXLAN_PORT)?;
    m.add("VXLAN_OVERHEAD", vxlan::VXLAN_OVERHEAD)?;
    m.add("IPIP_OVERHEAD", ipip::IPIP_OVERHEAD)?;
    m.add_function(wrap_pyfunction!(internet_checksum, m)?)?;
    m.add_function(wrap_pyfunction!(checksum_adjust16, m)?)?;
    m.add_function(wrap_pyfunction!(checksum_adjust32, m)?)?;
    m.add_function(wrap_pyfunction!(hash64, m)?)?;
    m.add_function(wrap_pyfunction!(flow_hash, m)?)?;
    m.add_function(wrap_pyfunction!(packet_flow_hash, m)?)?;
    m.add_function(wrap_pyfunction!(is_prime, m)?)?;
    m.add_function(wrap_pyfunction!(parse_ipv4, m)?)?;
    m.add_function(wrap_pyfunction!(parse_udp, m)?)?;
    m.add_function(wrap_pyfunction!(parse_tcp, m)?)?;
    m.add_function(wrap_pyfunction!(build_udp, m)?)?;
    m.add_function(wrap_pyfunction!(build_tcp, m)?)?;
    m.add_function(wrap_pyfunction!(vxlan_decap, m)?)?;
    m.add_function(wrap_pyfunction!(ipip_decap, m)?)?;
    m.add_function(wrap_pyfunction!(decap_batch, m)?)?;
    m.add_function(wrap_pyfunction!(copy_batch, m)?)?;
    m.add_class::<Maglev>()?;
    m.add_class::<Ipv4Header>()?;
    m.add_class::<VxlanEncap>()?;
    m.add_class::<IpipEncap>()?;
    m.add_class::<PrefixTable>()?;
    m.add_class::<TunnelEngine>()?;
    Ok(())
}
