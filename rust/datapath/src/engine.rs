//! The TUN tunnel engine: two threads that move packets between a TUN device and the
//! underlay, so a node can carry pod traffic over VXLAN or IPIP without a kernel tunnel
//! device (this kernel has no `ipip` device at all).
//!
//! - **TX thread**: reads IPv4 packets from the TUN device (non-blocking reads until the
//!   batch is full or the device is empty), looks the destination up in the
//!   [`PrefixTable`] (pod CIDR → remote node), writes the tunnel headers *in place* into
//!   headroom reserved in front of each packet, and hands the batch to one `sendmmsg`.
//! - **RX thread**: one `recvmmsg` fills a batch from the underlay socket, each packet is
//!   decapsulated with the codec in [`crate::packet`] and written to the TUN device.
//!
//! VXLAN goes through a UDP socket bound to the VXLAN port: the kernel writes the outer
//! IPv4/UDP headers, the engine the VXLAN header and an inner Ethernet header (so the
//! format is RFC 7348 on the wire). Its UDP source port is therefore the bound port, not a
//! per-flow hash. IPIP goes through a raw IPv4 socket of protocol 4 bound to the local
//! address: the kernel writes the outer header (TTL from the configuration, TOS copied from
//! the inner header per message, RFC 2003) and the engine receives whole outer packets,
//! reassembled by the kernel when they came in fragments, which [`ipip_decap`] checks.
//!
//! Both threads poll with a short timeout and watch a stop flag, so [`TunnelEngine::stop`]
//! returns within about 100 ms and closes every descriptor. With `netns` set, the device
//! and sockets are opened by a short-lived thread that joined that network namespace
//! (`setns` applies per thread); the workers then need no namespace of their own, because
//! a descriptor stays bound to the namespace it was created in.
//!
//! With `offload` on, the device is opened with `IFF_VNET_HDR` and TSO4/checksum offload,
//! so the TX thread reads TCP packets of up to 64 KiB (see [`crate::packet::offload`]):
//!
//! - **VXLAN** segments them and sends runs of equal-sized datagrams as one UDP GSO message
//!   (`UDP_SEGMENT`); the receiver asks for UDP GRO and coalesces the segments of a flow into
//!   one GSO write to TUN. GSO skbs cross the underlay whole, as with the kernel's VXLAN.
//! - **IPIP** (with `outer_fragments`, the default) sends each TSO packet *whole*, with full
//!   checksums, as one IPIP packet; the raw socket never sets DF, so the kernel fragments
//!   the outer packet at the underlay MTU (RFC 2003 §5.1 allows it) and the receiving
//!   kernel reassembles it. An outer-header IP option carries the sender's segment size
//!   ([`crate::packet::ipip`]), so the receiving engine writes the packet back to TUN as one
//!   GSO packet of the same MSS (an engine without offloads cuts it into segments). A raw
//!   socket has no GSO, and a GSO packet from userspace cannot be IPIP (tried on 6.18: a
//!   packet socket with `PACKET_VNET_HDR` sending Ethernet + outer IPv4 + TCP/IPv4 as GSO
//!   TCPV4): the kernel marks it `SKB_GSO_DODGY`, veth lacks `NETIF_F_GSO_ROBUST`, so the
//!   first veth segments it in software, and `ipip_gso_segment` refuses anything without
//!   `SKB_GSO_IPXIP4`, which only the kernel's own tunnels and GRO set: the frame is
//!   dropped (`ENOMEM` from `sendmsg`, `tx_dropped` on the device), while a plain TCP GSO
//!   frame from the same socket crosses veth, bridge and veth whole. TUN with a vnet header
//!   makes the same DODGY packets, and GRO passes DODGY packets through untouched. So the
//!   wire sees about 44 packets per 64 KiB at MTU 1500 either way; this path
//!   saves the engine cutting, checksumming and sending each segment and the receiver
//!   gluing them back: every `sendmsg`/`recv` moves 64 KiB. The kernel's per-fragment work
//!   (output, veth, reassembly) is what remains, and it dominates on a veth underlay.
//! - **IPIP with `gro_send`** gets the one-GSO-packet crossing through GRO instead: the TX
//!   thread cuts TSO packets into plain RFC 2003 packets (outer header written here, no DF,
//!   identification +1 per packet) and writes them one by one into a second TUN device,
//!   `<tun_name>g`, opened with `IFF_NAPI`. Its NAPI runs GRO, which merges the segments
//!   of a flow into one `SKB_GSO_IPXIP4 | SKB_GSO_TCPV4` packet that the node forwards
//!   to the underlay, where veth carries it whole (on a NIC, TSO or the kernel's GSO cuts
//!   it into the same plain packets, so any RFC 2003 receiver can take it). Two sysfs
//!   settings make GRO merge across writes: `gro_flush_timeout` (without it every write
//!   ends a NAPI poll and flushes) and threaded NAPI (GRO and forwarding on a kernel
//!   thread beside the TX thread); sysfs shows only its mounter's namespace, so a child
//!   process joins the engine's namespace and mounts its own. The device also needs
//!   `accept_local` (its packets come from the node's own address). The receiving engine
//!   recognises a merged packet as an IPIP packet without the segment-size option whose
//!   inner TCP packet exceeds its TUN MTU, guesses the segment size from that MTU, and
//!   writes it back as GSO with `NEEDS_CSUM` (GRO leaves only the pseudo-header sum in
//!   the TCP checksum; the kernel verified each segment's checksum when merging). When the
//!   device cannot be set up the engine falls back to outer fragments. It works (tested:
//!   the underlay sees 35-55 KiB packets) but is not faster: each segment still costs a
//!   `write` and a trip through the TUN device's receive path, about what a fragment
//!   costs: `pod_network.py` (bridge underlay) measures it at 0.89-1.05 of the
//!   outer-fragment path, `datapath_tunnel.py` (one veth) at 0.7, so it is off by default.
//!   Where it pays is towards kernel IPIP peers: plain RFC 2003 packets on the wire at
//!   about 1.5 times the speed of `outer_fragments` off.
//!
//! Plain IPIP packets (any other sender) are handled as before, so engines interoperate
//! whatever their settings (tested).
//!
//! Outer DF is never set, in any IPIP path: a packet too big for the underlay is
//! fragmented rather than dropped without an ICMP error (with `IP_HDRINCL` the kernel
//! refused it). Inner DF is not copied to the outer header, a deviation from RFC 2003
//! §3.1 that matters only when the underlay MTU is below the TUN MTU + 20. A lost fragment
//! loses the whole aggregate (up to 44 segments), which TCP recovers like a burst loss;
//! on a lossy underlay, or towards kernel IPIP peers that cannot handle 64 KiB inner
//! packets, set `outer_fragments` off to send plain per-segment RFC 2003 packets. The
//! 16-bit IP identification wraps every few seconds at 10 Gbit/s; the kernel drops
//! reassembly queues left behind by a loss once 64 later fragments came from that sender
//! (`ipfrag_max_dist`), and the aggregate's TCP checksum, complete and verified by the
//! receiving kernel (the GSO write does not mark it as checked), catches what slips by.
//!
//! Interoperates with the kernel's VXLAN device (tested). One caveat on veth underlays: a
//! kernel VXLAN sender leaves the inner TCP checksum to "hardware" and veth never computes
//! it, so a userspace receiver sees only the pseudo-header sum; on a real NIC, or with TX
//! checksum offload off on the sender's VXLAN device, the checksum arrives complete.
//!
//! Not done (yet): multi-queue TUN with a TX/RX thread pair per queue (it would spread
//! many flows over cores; one TCP flow stays on one queue, and this host has two cores),
//! outer DF for plain IPIP packets whose inner packet has DF, a per-flow VXLAN source port.

use std::ffi::CString;
use std::fs::File;
use std::io;
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd, RawFd};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex, RwLock};
use std::thread::JoinHandle;

use crate::error::{Error, Result};
use crate::lpm::PrefixTable;
use crate::packet::ipip::{ipip_decap, mss_option, MSS_OPTION_LEN};
use crate::packet::ipv4::{Ipv4Header, IPV4_HEADER_LEN};
use crate::packet::offload::{
    complete_checksum, finish_tcpv4, gro_tcpv4_header, gso_tcpv4_header, segment_count,
    segment_tcpv4, TcpCoalescer, VnetHdr, VNET_F_NEEDS_CSUM, VNET_GSO_ECN, VNET_GSO_NONE,
    VNET_GSO_TCPV4, VNET_HDR_LEN,
};
use crate::packet::vxlan::{parse_vxlan_header, write_vxlan_header, VXLAN_HEADER_LEN};
use crate::packet::{ETHERNET_HEADER_LEN, ETHERTYPE_IPV4, PROTO_IPIP};

/// Bytes reserved in front of each packet read from TUN, for headers written in place.
const HEADROOM: usize = 64;
/// Bytes per batch slot: headroom plus the largest packet handled (TUN MTU up to 9000).
const SLOT: usize = HEADROOM + 9216;
/// How long a worker waits in `poll` before it looks at the stop flag again.
const POLL_MS: libc::c_int = 100;
/// Largest TSO packet TUN hands over (an IPv4 packet).
const MAX_TSO: usize = 65_535;
/// Smallest MSS a TSO packet is cut into (IPv4 minimum MTU 576 - 40).
const MIN_MSS: usize = 536;
/// Largest inner packet of an IPIP aggregate: what fits behind the outer header and its
/// segment-size option in one IPv4 packet.
const MAX_AGGREGATE: usize = MAX_TSO - IPV4_HEADER_LEN - MSS_OPTION_LEN;
/// Upper bound of an IPv4 + TCP header (both with the most options).
const MAX_TCPIP_HEADER: usize = 120;
/// VXLAN payload in front of the inner IP packet: VXLAN header + inner Ethernet header.
const VXLAN_PREFIX: usize = VXLAN_HEADER_LEN + ETHERNET_HEADER_LEN;
/// Locally administered MACs for the inner Ethernet header (the TUN side has no MACs).
const INNER_SRC_MAC: [u8; 6] = [0x02, 0x6b, 0x74, 0x00, 0x00, 0x01];
const INNER_DST_MAC: [u8; 6] = [0x02, 0x6b, 0x74, 0x00, 0x00, 0x02];
/// How long the GRO device holds merged segments waiting for more (`gro_flush_timeout`):
/// without it the kernel flushes after every write, so nothing would ever merge.
const GRO_FLUSH_NS: u32 = 50_000;
/// Settings of the GRO device, as files under its sysfs directory: the flush timeout, and
/// threaded NAPI, so a kernel thread (on the other core when there is one) runs GRO and
/// forwarding while the TX thread writes, instead of both taking turns on one core.
const GRO_SYSFS: [(&str, u32); 2] = [("gro_flush_timeout", GRO_FLUSH_NS), ("threaded", 1)];

/// Which encapsulation the engine speaks on the underlay.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TunnelMode {
    /// VXLAN over UDP `port` with network identifier `vni`.
    Vxlan {
        /// VXLAN network identifier (24 bits).
        vni: u32,
        /// UDP port, bound locally and used as destination.
        port: u16,
    },
    /// IP in IP over a raw socket of protocol 4.
    Ipip,
}

/// Configuration of a [`TunnelEngine`].
#[derive(Debug, Clone)]
pub struct EngineConfig {
    /// Name of the TUN device to attach to (created if missing, removed with the engine then).
    pub tun_name: String,
    /// Encapsulation.
    pub mode: TunnelMode,
    /// This node's underlay address (outer source for IPIP; bind address for VXLAN, 0 = any).
    pub local: u32,
    /// Network namespace to open the device and sockets in: a name under
    /// `/var/run/netns/` or a path; `None` for the caller's namespace.
    pub netns: Option<String>,
    /// Packets per `recvmmsg`/`sendmmsg` batch.
    pub batch: usize,
    /// Outer TTL for IPIP (VXLAN uses the socket default).
    pub ttl: u8,
    /// Use TUN offloads (`IFF_VNET_HDR`, TSO4 and checksum offload): read 64 KiB TSO
    /// packets and segment them here, coalesce received TCP segments into GSO writes.
    pub offload: bool,
    /// IPIP with `offload`: send each TSO packet whole, as one IPIP packet the kernel
    /// fragments on the underlay, instead of segmenting it here (see the module
    /// documentation). Receivers must be engines (any mode); `false` puts only plain
    /// RFC 2003 packets on the wire, for kernel IPIP peers.
    pub outer_fragments: bool,
    /// IPIP with `offload`: put plain per-segment packets on the wire but let the kernel's
    /// GRO merge them into one GSO packet before they leave (see the module documentation);
    /// falls back to `outer_fragments` when the GRO device cannot be set up.
    pub gro_send: bool,
}

/// Counters of a running engine; read with [`TunnelEngine::stats`].
#[derive(Debug, Default)]
struct Counters {
    tx_packets: AtomicU64,
    tx_bytes: AtomicU64,
    tx_batches: AtomicU64,
    tx_no_route: AtomicU64,
    tx_errors: AtomicU64,
    tx_aggregates: AtomicU64,
    rx_packets: AtomicU64,
    rx_bytes: AtomicU64,
    rx_batches: AtomicU64,
    rx_malformed: AtomicU64,
    rx_errors: AtomicU64,
    rx_aggregates: AtomicU64,
}

/// A snapshot of the engine's counters.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct EngineStats {
    /// Packets read from TUN and sent encapsulated.
    pub tx_packets: u64,
    /// Inner bytes of those packets.
    pub tx_bytes: u64,
    /// Send calls: `sendmmsg` of a batch, or `sendmsg` of an IPIP aggregate.
    pub tx_batches: u64,
    /// Packets dropped because no route matched their destination (or not IPv4).
    pub tx_no_route: u64,
    /// Read or send failures.
    pub tx_errors: u64,
    /// TSO packets sent whole as one outer-fragmented IPIP packet (counted once in
    /// `tx_packets` each).
    pub tx_aggregates: u64,
    /// Packets received, decapsulated and written to TUN.
    pub rx_packets: u64,
    /// Inner bytes of those packets.
    pub rx_bytes: u64,
    /// `recvmmsg` calls that returned packets.
    pub rx_batches: u64,
    /// Received packets rejected by the decapsulator (or a foreign VNI).
    pub rx_malformed: u64,
    /// Receive or TUN write failures.
    pub rx_errors: u64,
    /// Reassembled IPIP aggregates, or IPIP packets merged by GRO on the way (`gro_send`),
    /// written back to TUN (counted once in `rx_packets` each).
    pub rx_aggregates: u64,
}

impl Counters {
    fn snapshot(&self) -> EngineStats {
        let g = |c: &AtomicU64| c.load(Ordering::Relaxed);
        EngineStats {
            tx_packets: g(&self.tx_packets),
            tx_bytes: g(&self.tx_bytes),
            tx_batches: g(&self.tx_batches),
            tx_no_route: g(&self.tx_no_route),
            tx_errors: g(&self.tx_errors),
            tx_aggregates: g(&self.tx_aggregates),
            rx_packets: g(&self.rx_packets),
            rx_bytes: g(&self.rx_bytes),
            rx_batches: g(&self.rx_batches),
            rx_malformed: g(&self.rx_malformed),
            rx_errors: g(&self.rx_errors),
            rx_aggregates: g(&self.rx_aggregates),
        }
    }
}

fn add(c: &AtomicU64, n: u64) {
    c.fetch_add(n, Ordering::Relaxed);
}

/// A TUN ⇄ underlay tunnel; see the module documentation.
///
/// Every method takes `&self`, so one engine can be shared between threads: start and stop
/// serialise on a lock, while routes, counters and [`TunnelEngine::is_running`] never wait
/// for a stop in progress.
pub struct TunnelEngine {
    config: EngineConfig,
    routes: Arc<RwLock<PrefixTable>>,
    counters: Arc<Counters>,
    stop: Arc<AtomicBool>,
    running: AtomicBool,
    threads: Mutex<Vec<JoinHandle<()>>>,
}

impl std::fmt::Debug for TunnelEngine {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("TunnelEngine")
            .field("config", &self.config)
            .field("running", &self.is_running())
            .finish()
    }
}

impl TunnelEngine {
    /// A stopped engine; checks the configuration.
    pub fn new(config: EngineConfig) -> Result<Self> {
        if config.tun_name.is_empty() || config.tun_name.len() >= libc::IFNAMSIZ {
            return Err(Error::InvalidArgument(format!(
                "TUN name {:?} must have 1 to {} bytes",
                config.tun_name,
                libc::IFNAMSIZ - 1
            )));
        }
        if config.batch == 0 || config.batch > 1024 {
            return Err(Error::InvalidArgument("batch must be 1..=1024".into()));
        }
        if let TunnelMode::Vxlan { vni, .. } = config.mode {
            write_vxlan_header(vni, &mut [0u8; VXLAN_HEADER_LEN])?;
        }
        Ok(TunnelEngine {
            config,
            routes: Arc::new(RwLock::new(PrefixTable::new())),
            counters: Arc::default(),
            stop: Arc::new(AtomicBool::new(false)),
            running: AtomicBool::new(false),
            threads: Mutex::new(Vec::new()),
        })
    }

    /// Routes `prefix/len` to the node at underlay address `remote`; returns the previous
    /// remote. Takes effect at the next batch, also while running.
    pub fn add_route(&self, prefix: u32, len: u8, remote: u32) -> Result<Option<u32>> {
        self.routes
            .write()
            .map_err(|_| Error::Io("route table lock poisoned".into()))?
            .insert(prefix, len, remote)
    }

    /// Removes the route `prefix/len`; returns its remote if it existed.
    pub fn remove_route(&self, prefix: u32, len: u8) -> Result<Option<u32>> {
        self.routes
            .write()
            .map_err(|_| Error::Io("route table lock poisoned".into()))?
            .remove(prefix, len)
    }

    /// True between [`TunnelEngine::start`] and [`TunnelEngine::stop`].
    pub fn is_running(&self) -> bool {
        self.running.load(Ordering::SeqCst)
    }

    /// Current counters.
    pub fn stats(&self) -> EngineStats {
        self.counters.snapshot()
    }

    /// Opens the TUN device and the underlay socket and starts both threads.
    pub fn start(&self) -> Result<()> {
        let mut threads = self
            .threads
            .lock()
            .map_err(|_| Error::Io("engine lock poisoned".into()))?;
        if !threads.is_empty() {
            return Err(Error::InvalidArgument("engine already running".into()));
        }
        let cfg = self.config.clone();
        let gro_name = self.gro_device();
        let (tun, sock, gro) = in_netns(cfg.netns.as_deref(), move || {
            let tun = open_tun(&cfg.tun_name, cfg.offload)?;
            let sock = match cfg.mode {
                TunnelMode::Vxlan { port, .. } => udp_socket(cfg.local, port)?,
                TunnelMode::Ipip => ipip_socket(cfg.local, cfg.ttl)?,
            };
            // Without the GRO device the engine still works, sending fragments.
            let gro =
                gro_name.and_then(|name| open_gro_tun(&name, &sock).ok().map(|fd| (fd, name)));
            Ok((tun, sock, gro))
        })?;
        let gro = gro.and_then(|(fd, name)| {
            tune_gro_device(self.config.netns.as_deref(), &name).ok()?;
            Some(Arc::new(fd))
        });
        let (tun, sock) = (Arc::new(tun), Arc::new(sock));
        self.stop.store(false, Ordering::SeqCst);
        let tx = Worker {
            config: self.config.clone(),
            tun: tun.clone(),
            sock: sock.clone(),
            gro,
            routes: self.routes.clone(),
            counters: self.counters.clone(),
            stop: self.stop.clone(),
        };
        let rx = Worker { ..tx.clone() };
        threads.push(spawn("kubetrio-tun-tx", move || tx.transmit())?);
        match spawn("kubetrio-tun-rx", move || rx.receive()) {
            Ok(h) => threads.push(h),
            Err(e) => {
                self.join(&mut threads);
                return Err(e);
            }
        }
        self.running.store(true, Ordering::SeqCst);
        Ok(())
    }

    /// The name of the GRO device for [`EngineConfig::gro_send`]: the TUN name with a `g`
    /// appended, or `None` when not asked for or the name would be too long.
    fn gro_device(&self) -> Option<String> {
        let c = &self.config;
        let wanted = c.offload && c.gro_send && c.mode == TunnelMode::Ipip;
        (wanted && c.tun_name.len() + 1 < libc::IFNAMSIZ).then(|| format!("{}g", c.tun_name))
    }

    /// Stops both threads and closes the device and socket. Idempotent.
    pub fn stop(&self) {
        // A poisoned lock only means a start panicked; the handles are still valid.
        let mut threads = self.threads.lock().unwrap_or_else(|e| e.into_inner());
        self.join(&mut threads);
    }

    fn join(&self, threads: &mut Vec<JoinHandle<()>>) {
        self.stop.store(true, Ordering::SeqCst);
        for t in threads.drain(..) {
            // A worker that panicked has nothing left to clean up; the descriptors close
            // when the last Arc drops.
            let _ = t.join();
        }
        self.running.store(false, Ordering::SeqCst);
    }
}

impl Drop for TunnelEngine {
    fn drop(&mut self) {
        self.stop();
    }
}

fn spawn(name: &str, f: impl FnOnce() + Send + 'static) -> Result<JoinHandle<()>> {
    std::thread::Builder::new()
        .name(name.into())
        .spawn(f)
        .map_err(Error::from)
}

/// Opens network namespace `name`: a name under `/var/run/netns/` or a path.
fn open_netns(name: &str) -> Result<File> {
    let path = if name.contains('/') {
        name.to_string()
    } else {
        format!("/var/run/netns/{name}")
    };
    File::open(&path).map_err(|e| Error::Io(format!("{path}: {e}")))
}

/// Runs `f` on a thread that joined network namespace `netns` (or directly when `None`).
fn in_netns<T: Send + 'static>(
    netns: Option<&str>,
    f: impl FnOnce() -> Result<T> + Send + 'static,
) -> Result<T> {
    let Some(name) = netns else { return f() };
    let ns = open_netns(name)?;
    std::thread::spawn(move || {
        // SAFETY: setns on a namespace fd we own; it only changes this short-lived thread.
        if unsafe { libc::setns(ns.as_raw_fd(), libc::CLONE_NEWNET) } != 0 {
            return Err(Error::Io(format!("setns: {}", io::Error::last_os_error())));
        }
        f()
    })
    .join()
    .map_err(|_| Error::Io("namespace setup thread panicked".into()))?
}

fn check(ret: libc::c_int, what: &str) -> Result<libc::c_int> {
    if ret < 0 {
        Err(Error::Io(format!("{what}: {}", io::Error::last_os_error())))
    } else {
        Ok(ret)
    }
}

fn owned(fd: libc::c_int, what: &str) -> Result<OwnedFd> {
    let fd = check(fd, what)?;
    // SAFETY: `fd` was just returned by the kernel and is owned by nobody else.
    Ok(unsafe { OwnedFd::from_raw_fd(fd) })
}

fn open_tun(name: &str, offload: bool) -> Result<OwnedFd> {
    let path = CString::new("/dev/net/tun").expect("no NUL in literal");
    // SAFETY: plain open(2) of a NUL-terminated path.
    let fd = owned(
        unsafe {
            libc::open(
                path.as_ptr(),
                libc::O_RDWR | libc::O_CLOEXEC | libc::O_NONBLOCK,
            )
        },
        "open /dev/net/tun",
    )?;
    let mut req = ifreq(name);
    let vnet = if offload { libc::IFF_VNET_HDR } else { 0 };
    req.ifr_ifru.ifru_flags = (libc::IFF_TUN | libc::IFF_NO_PI | vnet) as libc::c_short;
    // SAFETY: TUNSETIFF reads and writes one ifreq, which lives across the call.
    check(
        unsafe { libc::ioctl(fd.as_raw_fd(), libc::TUNSETIFF, &mut req) },
        "TUNSETIFF",
    )?;
    if offload {
        let features = libc::TUN_F_CSUM | libc::TUN_F_TSO4;
        // SAFETY: TUNSETOFFLOAD takes the feature mask by value.
        check(
            unsafe {
                libc::ioctl(
                    fd.as_raw_fd(),
                    libc::TUNSETOFFLOAD,
                    features as libc::c_ulong,
                )
            },
            "TUNSETOFFLOAD",
        )?;
    }
    Ok(fd)
}

/// An `ifreq` naming interface `name` (shorter than `IFNAMSIZ`, checked by the callers).
fn ifreq(name: &str) -> libc::ifreq {
    // SAFETY: ifreq is plain data; all-zero is a valid value.
    let mut req: libc::ifreq = unsafe { std::mem::zeroed() };
    for (dst, &src) in req.ifr_name.iter_mut().zip(name.as_bytes()) {
        *dst = src as libc::c_char;
    }
    req
}

/// The MTU of interface `name`, asked through `sock` (any socket of its namespace).
fn if_mtu(sock: RawFd, name: &str) -> Option<usize> {
    let mut req = ifreq(name);
    // SAFETY: SIOCGIFMTU reads and writes one ifreq, which lives across the call.
    if unsafe { libc::ioctl(sock, libc::SIOCGIFMTU, &mut req) } < 0 {
        return None;
    }
    // SAFETY: SIOCGIFMTU filled in the MTU member of the union.
    usize::try_from(unsafe { req.ifr_ifru.ifru_mtu }).ok()
}

/// The GRO device of [`EngineConfig::gro_send`]: a TUN device in NAPI mode, so what the
/// TX thread writes into it goes through GRO like packets from a NIC, then the node
/// forwards it to the remote. It is up, accepts packets from the node's own address
/// (`accept_local`, which also needs `rp_filter` off) and closes with the descriptor.
/// Must run in the engine's namespace; `sock` is one of its sockets.
fn open_gro_tun(name: &str, sock: &OwnedFd) -> Result<OwnedFd> {
    let path = CString::new("/dev/net/tun").expect("no NUL in literal");
    // SAFETY: plain open(2) of a NUL-terminated path.
    let fd = owned(
        unsafe { libc::open(path.as_ptr(), libc::O_RDWR | libc::O_CLOEXEC) },
        "open /dev/net/tun",
    )?;
    let mut req = ifreq(name);
    req.ifr_ifru.ifru_flags = (libc::IFF_TUN | libc::IFF_NO_PI | libc::IFF_NAPI) as libc::c_short;
    // SAFETY: TUNSETIFF reads and writes one ifreq, which lives across the call.
    check(
        unsafe { libc::ioctl(fd.as_raw_fd(), libc::TUNSETIFF, &mut req) },
        "TUNSETIFF (GRO)",
    )?;
    // /proc/sys/net shows the namespace of the thread that opens it.
    for (key, value) in [("accept_local", "1"), ("rp_filter", "0")] {
        let path = format!("/proc/sys/net/ipv4/conf/{name}/{key}");
        std::fs::write(&path, value).map_err(|e| Error::Io(format!("{path}: {e}")))?;
    }
    let mut req = ifreq(name);
    req.ifr_ifru.ifru_flags = libc::IFF_UP as libc::c_short;
    // SAFETY: SIOCSIFFLAGS reads one ifreq, which lives across the call.
    check(
        unsafe { libc::ioctl(sock.as_raw_fd(), libc::SIOCSIFFLAGS, &req) },
        "SIOCSIFFLAGS (GRO)",
    )?;
    Ok(fd)
}

/// Writes [`GRO_SYSFS`] for device `name` of namespace `netns`. Only sysfs has these
/// knobs, and sysfs shows the devices of the namespace it was mounted in, so for another
/// namespace a child process joins it and mounts its own sysfs (as `ip netns exec` does).
fn tune_gro_device(netns: Option<&str>, name: &str) -> Result<()> {
    let dir = format!("/sys/class/net/{name}");
    let Some(netns) = netns else {
        for (file, value) in GRO_SYSFS {
            let path = format!("{dir}/{file}");
            std::fs::write(&path, value.to_string())
                .map_err(|e| Error::Io(format!("{path}: {e}")))?;
        }
        return Ok(());
    };
    use std::os::unix::process::CommandExt;
    let ns = open_netns(netns)?;
    let (root, sys, sysfs) = (c"/", c"/sys", c"sysfs");
    let mut cmd = std::process::Command::new("/bin/sh");
    let script: Vec<String> = GRO_SYSFS
        .iter()
        .map(|(file, value)| format!("echo {value} > {dir}/{file}"))
        .collect();
    cmd.args(["-c", &script.join(" && ")]);
    let fd = ns.as_raw_fd();
    // SAFETY: the closure runs in the forked child before exec and makes only system calls
    // on data prepared before the fork.
    unsafe {
        cmd.pre_exec(move || {
            let ok = libc::setns(fd, libc::CLONE_NEWNET) == 0
                && libc::unshare(libc::CLONE_NEWNS) == 0
                && libc::mount(
                    std::ptr::null(),
                    root.as_ptr(),
                    std::ptr::null(),
                    libc::MS_REC | libc::MS_SLAVE,
                    std::ptr::null(),
                ) == 0
                && libc::umount2(sys.as_ptr(), libc::MNT_DETACH) == 0
                && libc::mount(
                    sysfs.as_ptr(),
                    sys.as_ptr(),
                    sysfs.as_ptr(),
                    0,
                    std::ptr::null(),
                ) == 0;
            if ok {
                Ok(())
            } else {
                Err(io::Error::last_os_error())
            }
        });
    }
    let status = cmd.status().map_err(|e| Error::Io(format!("{dir}: {e}")))?;
    if !status.success() {
        return Err(Error::Io(format!("{dir}: {status}")));
    }
    Ok(())
}

fn set_int_opt(fd: RawFd, level: libc::c_int, opt: libc::c_int, value: libc::c_int) -> Result<()> {
    // SAFETY: setsockopt with a pointer to a live c_int and its size.
    check(
        unsafe {
            libc::setsockopt(
                fd,
                level,
                opt,
                (&value as *const libc::c_int).cast(),
                std::mem::size_of::<libc::c_int>() as libc::socklen_t,
            )
        },
        "setsockopt",
    )
    .map(|_| ())
}

/// Socket buffers of 4 MiB absorb bursts between batches; the default (about 208 KiB)
/// overflows under a single TCP stream and costs retransmits. The FORCE variants pass the
/// `rmem_max` cap with CAP_NET_ADMIN; without it fall back to the capped request.
fn big_buffers(fd: RawFd) {
    const SIZE: libc::c_int = 4 << 20;
    for (force, plain) in [
        (libc::SO_RCVBUFFORCE, libc::SO_RCVBUF),
        (libc::SO_SNDBUFFORCE, libc::SO_SNDBUF),
    ] {
        if set_int_opt(fd, libc::SOL_SOCKET, force, SIZE).is_err() {
            let _ = set_int_opt(fd, libc::SOL_SOCKET, plain, SIZE);
        }
    }
}

fn sockaddr(addr: u32, port: u16) -> libc::sockaddr_in {
    // SAFETY: sockaddr_in is plain data; all-zero is valid.
    let mut sa: libc::sockaddr_in = unsafe { std::mem::zeroed() };
    sa.sin_family = libc::AF_INET as libc::sa_family_t;
    sa.sin_port = port.to_be();
    sa.sin_addr.s_addr = addr.to_be();
    sa
}

fn bind(fd: &OwnedFd, local: u32, port: u16, what: &str) -> Result<()> {
    let sa = sockaddr(local, port);
    // SAFETY: bind with a live sockaddr_in and its size.
    check(
        unsafe {
            libc::bind(
                fd.as_raw_fd(),
                (&sa as *const libc::sockaddr_in).cast(),
                std::mem::size_of::<libc::sockaddr_in>() as libc::socklen_t,
            )
        },
        what,
    )
    .map(|_| ())
}

fn udp_socket(local: u32, port: u16) -> Result<OwnedFd> {
    // SAFETY: socket(2) with constant arguments.
    let fd = owned(
        unsafe { libc::socket(libc::AF_INET, libc::SOCK_DGRAM | libc::SOCK_CLOEXEC, 0) },
        "socket(UDP)",
    )?;
    big_buffers(fd.as_raw_fd());
    bind(&fd, local, port, "bind(UDP)")?;
    Ok(fd)
}

/// The raw protocol-4 socket. The kernel writes the outer header (source: the bound
/// address, `ttl`, TOS from each message) and, with DF never set, fragments what exceeds
/// the underlay MTU; binding also limits reception to packets for `local`, which need not
/// be configured yet (`IP_FREEBIND`), so the engine may start before the node's address.
fn ipip_socket(local: u32, ttl: u8) -> Result<OwnedFd> {
    // SAFETY: socket(2) with constant arguments.
    let fd = owned(
        unsafe {
            libc::socket(
                libc::AF_INET,
                libc::SOCK_RAW | libc::SOCK_CLOEXEC,
                libc::IPPROTO_IPIP,
            )
        },
        "socket(raw, IPIP)",
    )?;
    let raw = fd.as_raw_fd();
    set_int_opt(raw, libc::IPPROTO_IP, libc::IP_TTL, ttl.into())?;
    set_int_opt(
        raw,
        libc::IPPROTO_IP,
        libc::IP_MTU_DISCOVER,
        libc::IP_PMTUDISC_DONT,
    )?;
    set_int_opt(raw, libc::IPPROTO_IP, libc::IP_FREEBIND, 1)?;
    big_buffers(raw);
    bind(&fd, local, 0, "bind(raw, IPIP)")?;
    Ok(fd)
}

/// Writes control messages `(level, type, data)` one after another into `buf`; returns
/// the `msg_controllen` that goes with it.
fn write_cmsgs(buf: &mut [u64], items: &[(libc::c_int, libc::c_int, &[u8])]) -> usize {
    let base = buf.as_mut_ptr().cast::<u8>();
    let mut off = 0usize;
    for &(level, kind, data) in items {
        let n = data.len() as libc::c_uint;
        // SAFETY: CMSG_SPACE and CMSG_LEN only compute sizes.
        let (space, len) = unsafe { (libc::CMSG_SPACE(n) as usize, libc::CMSG_LEN(n)) };
        assert!(
            off + space <= std::mem::size_of_val(buf),
            "control buffer too small"
        );
        // SAFETY: the header and data lie inside `buf` (checked above); `off` is a multiple
        // of CMSG_SPACE's alignment and `buf` is u64-aligned, so the header is aligned.
        unsafe {
            let c = base.add(off).cast::<libc::cmsghdr>();
            (*c).cmsg_level = level;
            (*c).cmsg_type = kind;
            (*c).cmsg_len = len as _;
            std::ptr::copy_nonoverlapping(data.as_ptr(), libc::CMSG_DATA(c), data.len());
        }
        off += space;
    }
    off
}

/// The segment size of a UDP GRO message, from its `UDP_GRO` control message.
fn gro_size(hdr: &libc::msghdr) -> Option<usize> {
    // SAFETY: walks the control messages the kernel wrote into the buffer `hdr` names,
    // within `msg_controllen` as the CMSG_* macros guarantee.
    unsafe {
        let mut c = libc::CMSG_FIRSTHDR(hdr);
        while !c.is_null() {
            if (*c).cmsg_level == libc::SOL_UDP && (*c).cmsg_type == libc::UDP_GRO {
                let v = std::ptr::read_unaligned(libc::CMSG_DATA(c).cast::<libc::c_int>());
                return usize::try_from(v).ok();
            }
            c = libc::CMSG_NXTHDR(hdr, c);
        }
    }
    None
}

fn same_peer(a: &libc::sockaddr_in, b: &libc::sockaddr_in) -> bool {
    a.sin_addr.s_addr == b.sin_addr.s_addr && a.sin_port == b.sin_port
}

/// Waits up to [`POLL_MS`] for `fd` to become readable.
fn readable(fd: RawFd) -> bool {
    let mut p = libc::pollfd {
        fd,
        events: libc::POLLIN,
        revents: 0,
    };
    // SAFETY: poll on one live pollfd.
    let n = unsafe { libc::poll(&mut p, 1, POLL_MS) };
    n > 0 && p.revents & libc::POLLIN != 0
}

/// Payload bytes of each part when a TSO packet too long for one aggregate is cut: whole
/// segments of `mss`, as many as fit with the largest headers into [`MAX_AGGREGATE`].
fn aggregate_payload(mss: u16) -> usize {
    let mss = usize::from(mss);
    (MAX_AGGREGATE - MAX_TCPIP_HEADER) / mss * mss
}

/// The TX thread's batch: slots with headroom, lengths, and the `sendmmsg` scaffolding.
struct TxBatch {
    buf: Vec<u8>,
    lens: Vec<usize>,
    count: usize,
    spans: Vec<(usize, usize)>,
    addrs: Vec<libc::sockaddr_in>,
    iovs: Vec<libc::iovec>,
    msgs: Vec<libc::mmsghdr>,
    /// Per message: first span, number of spans, segment size (UDP GSO groups).
    groups: Vec<(usize, usize, usize)>,
    /// Control buffers for each message: UDP_SEGMENT of a group, IP_TOS of an IPIP packet.
    controls: Vec<[u64; 4]>,
    /// Send runs of equal-sized datagrams to one remote as one UDP GSO message.
    udp_gso: bool,
    /// Room for one aggregate cut in two (see [`Worker::send_aggregate`]); allocated on use.
    scratch: Vec<u8>,
    /// Outer IP identification of the next packet written to the GRO device: GRO merges
    /// packets without DF only when it goes up by one from packet to packet.
    ident: u16,
}

impl TxBatch {
    fn new(batch: usize) -> Self {
        // Room past the batch size for the segments of one TSO packet read last.
        let cap = batch + MAX_TSO / MIN_MSS + 1;
        TxBatch {
            buf: vec![0u8; cap * SLOT],
            lens: vec![0; cap],
            count: 0,
            spans: Vec::with_capacity(cap),
            addrs: vec![sockaddr(0, 0); cap],
            iovs: Vec::with_capacity(cap),
            msgs: Vec::with_capacity(cap),
            groups: Vec::with_capacity(cap),
            controls: vec![[0u64; 4]; cap],
            udp_gso: false,
            scratch: Vec::new(),
            ident: 0,
        }
    }

    fn capacity(&self) -> usize {
        self.lens.len()
    }
}

/// The RX thread's working state.
struct RxState {
    coalescer: TcpCoalescer,
    /// One segment of an aggregate, for an engine without offloads.
    segment: Vec<u8>,
    /// The TUN device's MTU as last asked (see [`Worker::merged_mss`]).
    tun_mtu: usize,
}

/// State shared by the two worker threads.
#[derive(Clone)]
struct Worker {
    config: EngineConfig,
    tun: Arc<OwnedFd>,
    sock: Arc<OwnedFd>,
    /// The GRO device of [`EngineConfig::gro_send`], when it is in use.
    gro: Option<Arc<OwnedFd>>,
    routes: Arc<RwLock<PrefixTable>>,
    counters: Arc<Counters>,
    stop: Arc<AtomicBool>,
}

impl Worker {
    /// TUN → underlay.
    fn transmit(self) {
        let batch = self.config.batch;
        let mut tx = TxBatch::new(batch);
        tx.udp_gso = self.config.offload && matches!(self.config.mode, TunnelMode::Vxlan { .. });
        // With offloads one read may return a 64 KiB TSO packet; it is cut into segments
        // in `big`'s place, straight into the batch slots.
        let mut big = vec![
            0u8;
            if self.config.offload {
                VNET_HDR_LEN + MAX_TSO
            } else {
                0
            }
        ];
        let tun = self.tun.as_raw_fd();
        while !self.stop.load(Ordering::Relaxed) {
            if !readable(tun) {
                continue;
            }
            loop {
                let more = if self.config.offload {
                    self.read_offloaded(tun, &mut big, &mut tx)
                } else {
                    self.read_plain(tun, &mut tx)
                };
                if tx.count >= batch {
                    self.flush(&mut tx);
                }
                if !more {
                    break;
                }
            }
            if tx.count > 0 {
                self.flush(&mut tx);
            }
        }
    }

    /// Reads one packet into the next slot; false when the device is empty (or failed).
    fn read_plain(&self, tun: RawFd, tx: &mut TxBatch) -> bool {
        let i = tx.count;
        let slot = &mut tx.buf[i * SLOT + HEADROOM..(i + 1) * SLOT];
        // SAFETY: read into a live slice of exactly the length passed.
        let n = unsafe { libc::read(tun, slot.as_mut_ptr().cast(), slot.len()) };
        if n < 0 {
            if io::Error::last_os_error().kind() != io::ErrorKind::WouldBlock {
                add(&self.counters.tx_errors, 1);
            }
            return false;
        }
        let n = n as usize;
        if n == 0 || n == slot.len() {
            add(&self.counters.tx_errors, 1); // empty or possibly truncated
        } else {
            tx.lens[i] = n;
            tx.count += 1;
        }
        true
    }

    /// Reads one virtio-net framed packet, completing its checksum or segmenting it into
    /// the next slots; false when the device is empty (or failed).
    fn read_offloaded(&self, tun: RawFd, big: &mut [u8], tx: &mut TxBatch) -> bool {
        // SAFETY: read into a live slice of exactly the length passed.
        let n = unsafe { libc::read(tun, big.as_mut_ptr().cast(), big.len()) };
        if n < 0 {
            if io::Error::last_os_error().kind() != io::ErrorKind::WouldBlock {
                add(&self.counters.tx_errors, 1);
            }
            return false;
        }
        let n = n as usize;
        let ok = (|| -> Result<()> {
            let hdr = VnetHdr::parse(&big[..n])?;
            let packet = &mut big[VNET_HDR_LEN..n];
            match hdr.gso_type & !VNET_GSO_ECN {
                VNET_GSO_NONE => {
                    if hdr.flags & VNET_F_NEEDS_CSUM != 0 {
                        complete_checksum(
                            packet,
                            usize::from(hdr.csum_start),
                            usize::from(hdr.csum_offset),
                        )?;
                    }
                    if packet.len() > SLOT - HEADROOM {
                        return Err(Error::InvalidArgument("packet exceeds slot".into()));
                    }
                    let i = tx.count;
                    tx.buf[i * SLOT + HEADROOM..i * SLOT + HEADROOM + packet.len()]
                        .copy_from_slice(packet);
                    tx.lens[i] = packet.len();
                    tx.count += 1;
                }
                VNET_GSO_TCPV4 if self.sends_aggregates() => {
                    self.send_aggregate(packet, hdr.gso_size, tx)?;
                }
                VNET_GSO_TCPV4 => {
                    let mss = usize::from(hdr.gso_size);
                    let segs = segment_count(packet, mss)?;
                    if tx.count + segs > tx.capacity() {
                        self.flush(tx);
                    }
                    if segs > tx.capacity() {
                        return Err(Error::InvalidArgument("too many segments".into()));
                    }
                    for k in 0..segs {
                        let i = tx.count;
                        let slot = &mut tx.buf[i * SLOT + HEADROOM..(i + 1) * SLOT];
                        tx.lens[i] = segment_tcpv4(packet, mss, k, slot)?;
                        tx.count += 1;
                    }
                }
                _ => {
                    return Err(Error::Unsupported {
                        what: "virtio-net header",
                        reason: "GSO type not enabled",
                    })
                }
            }
            Ok(())
        })();
        if ok.is_err() {
            add(&self.counters.tx_errors, 1);
        }
        true
    }

    /// True when TSO packets go out whole as IPIP aggregates.
    fn sends_aggregates(&self) -> bool {
        self.config.offload
            && self.config.outer_fragments
            && self.config.mode == TunnelMode::Ipip
            && self.gro.is_none()
    }

    /// The remote node for an IPv4 packet, or `None` (counted) without a route.
    fn remote_for(&self, routes: &PrefixTable, packet: &[u8]) -> Option<u32> {
        let remote = Ipv4Header::parse(packet)
            .ok()
            .and_then(|h| routes.lookup(h.dst));
        if remote.is_none() {
            add(&self.counters.tx_no_route, 1);
        }
        remote
    }

    /// Sends a TCP TSO packet whole, as one IPIP packet marked with its segment size, that
    /// the kernel fragments (the packets batched before it go first, to keep the order).
    /// One too long for an outer header (only a GRO packet forwarded into TUN can be) goes
    /// as two aggregates of whole segments.
    fn send_aggregate(&self, packet: &mut [u8], mss: u16, tx: &mut TxBatch) -> Result<()> {
        if mss == 0 {
            return Err(Error::Malformed {
                what: "virtio-net header",
                reason: "GSO size 0",
            });
        }
        let routes = self
            .routes
            .read()
            .map_err(|_| Error::Io("route table lock poisoned".into()))?;
        let Some(remote) = self.remote_for(&routes, packet) else {
            return Ok(());
        };
        drop(routes);
        if tx.count > 0 {
            self.flush(tx);
        }
        let opt = mss_option(mss);
        if packet.len() <= MAX_AGGREGATE {
            finish_tcpv4(packet)?;
            return self.send_whole(packet, remote, &opt);
        }
        let chunk = aggregate_payload(mss);
        tx.scratch.resize(MAX_TSO, 0);
        for k in 0..segment_count(packet, chunk)? {
            let n = segment_tcpv4(packet, chunk, k, &mut tx.scratch)?;
            self.send_whole(&tx.scratch[..n], remote, &opt)?;
        }
        Ok(())
    }

    /// One `sendmsg` of an aggregate with its TOS and segment-size option.
    fn send_whole(&self, packet: &[u8], remote: u32, opt: &[u8]) -> Result<()> {
        let mut addr = sockaddr(remote, 0);
        let mut iov = libc::iovec {
            iov_base: packet.as_ptr() as *mut libc::c_void,
            iov_len: packet.len(),
        };
        let mut control = [0u64; 8];
        let items = [
            (libc::IPPROTO_IP, libc::IP_RETOPTS, opt),
            (libc::IPPROTO_IP, libc::IP_TOS, &packet[1..2]), // as in `flush`
        ];
        let controllen = write_cmsgs(&mut control, &items[..1 + usize::from(packet[1] != 0)]);
        // SAFETY: msghdr is plain data; all-zero is valid before we fill it.
        let mut hdr: libc::msghdr = unsafe { std::mem::zeroed() };
        hdr.msg_name = (&mut addr as *mut libc::sockaddr_in).cast();
        hdr.msg_namelen = std::mem::size_of::<libc::sockaddr_in>() as libc::socklen_t;
        hdr.msg_iov = &mut iov;
        hdr.msg_iovlen = 1;
        hdr.msg_control = control.as_mut_ptr().cast();
        hdr.msg_controllen = controllen as _;
        // SAFETY: the message points at the live address, iovec, control buffer and packet.
        if unsafe { libc::sendmsg(self.sock.as_raw_fd(), &hdr, 0) } < 0 {
            return Err(Error::Io(format!(
                "sendmsg: {}",
                io::Error::last_os_error()
            )));
        }
        add(&self.counters.tx_batches, 1);
        add(&self.counters.tx_packets, 1);
        add(&self.counters.tx_aggregates, 1);
        add(&self.counters.tx_bytes, packet.len() as u64);
        Ok(())
    }

    /// Encapsulates the batch's packets in place and sends them with `sendmmsg`.
    fn flush(&self, tx: &mut TxBatch) {
        let count = std::mem::take(&mut tx.count);
        tx.spans.clear();
        let mut inner_bytes = 0u64;
        {
            let Ok(routes) = self.routes.read() else {
                return;
            };
            for i in 0..count {
                let slot = &mut tx.buf[i * SLOT..(i + 1) * SLOT];
                let n = tx.lens[i];
                let pkt = &slot[HEADROOM..HEADROOM + n];
                let Some(remote) = self.remote_for(&routes, pkt) else {
                    continue;
                };
                let (start, port) = match self.config.mode {
                    TunnelMode::Vxlan { vni, port } => {
                        let start = HEADROOM - VXLAN_PREFIX;
                        let h = &mut slot[start..HEADROOM];
                        if write_vxlan_header(vni, h).is_err() {
                            add(&self.counters.tx_errors, 1);
                            continue;
                        }
                        let eth = &mut h[VXLAN_HEADER_LEN..];
                        eth[0..6].copy_from_slice(&INNER_DST_MAC);
                        eth[6..12].copy_from_slice(&INNER_SRC_MAC);
                        eth[12..14].copy_from_slice(&ETHERTYPE_IPV4.to_be_bytes());
                        (start, port)
                    }
                    // Into the GRO device: the engine writes the outer header, without DF
                    // (as the raw socket sends it) and with the identification GRO wants.
                    TunnelMode::Ipip if self.gro.is_some() => {
                        let start = HEADROOM - IPV4_HEADER_LEN;
                        let (head, pkt) = slot.split_at_mut(HEADROOM);
                        if self
                            .outer_header(pkt, remote, tx.ident, &mut head[start..])
                            .is_err()
                        {
                            add(&self.counters.tx_errors, 1);
                            continue;
                        }
                        tx.ident = tx.ident.wrapping_add(1);
                        (start, 0)
                    }
                    // The kernel writes the outer header (see `ipip_socket`).
                    TunnelMode::Ipip => (HEADROOM, 0),
                };
                tx.addrs[tx.spans.len()] = sockaddr(remote, port);
                tx.spans.push((i * SLOT + start, HEADROOM + n - start));
                inner_bytes += n as u64;
            }
        }
        let ready = tx.spans.len();
        if ready == 0 {
            return;
        }
        if let Some(gro) = &self.gro {
            return self.write_gro(gro.as_raw_fd(), tx, inner_bytes);
        }
        // Pointers are taken only now, from the Vec's own raw pointer, after the last slice
        // of `buf` above is dead, so no reference invalidates them.
        let base = tx.buf.as_mut_ptr();
        tx.iovs.clear();
        for &(off, len) in &tx.spans {
            tx.iovs.push(libc::iovec {
                // SAFETY: off + len <= buf.len() by construction of the slots.
                iov_base: unsafe { base.add(off) }.cast(),
                iov_len: len,
            });
        }
        // Group runs for UDP GSO: same remote, full-sized datagrams but possibly the last,
        // at most 64 segments and 64 KiB (the kernel's limits for one GSO send).
        tx.groups.clear();
        let mut j = 0;
        while j < ready {
            let (first, size) = (j, tx.spans[j].1);
            let mut total = size;
            j += 1;
            while tx.udp_gso
                && j < ready
                && j - first < 64
                && tx.spans[j - 1].1 == size
                && tx.spans[j].1 <= size
                && total + tx.spans[j].1 <= 65_000
                && same_peer(&tx.addrs[j], &tx.addrs[first])
            {
                total += tx.spans[j].1;
                j += 1;
            }
            tx.groups.push((first, j - first, size));
        }
        tx.msgs.clear();
        for (g, &(first, count, size)) in tx.groups.iter().enumerate() {
            // SAFETY: msghdr is plain data; all-zero is valid before we fill it.
            let mut hdr: libc::msghdr = unsafe { std::mem::zeroed() };
            hdr.msg_name = (&mut tx.addrs[first] as *mut libc::sockaddr_in).cast();
            hdr.msg_namelen = std::mem::size_of::<libc::sockaddr_in>() as libc::socklen_t;
            hdr.msg_iov = tx.iovs[first..].as_mut_ptr();
            hdr.msg_iovlen = count as _;
            let ctrl = &mut tx.controls[g];
            let controllen = if count > 1 {
                let size = (size as u16).to_ne_bytes();
                write_cmsgs(ctrl, &[(libc::SOL_UDP, libc::UDP_SEGMENT, &size)])
            } else if self.config.mode == TunnelMode::Ipip {
                // RFC 2003: the outer TOS is the inner one (byte 1 of the inner header);
                // the socket's own TOS is 0.
                let tos = [tx.buf[tx.spans[first].0 + 1]];
                let items = [(libc::IPPROTO_IP, libc::IP_TOS, &tos[..])];
                write_cmsgs(ctrl, &items[..usize::from(tos[0] != 0)])
            } else {
                0
            };
            if controllen > 0 {
                hdr.msg_control = ctrl.as_mut_ptr().cast();
                hdr.msg_controllen = controllen as _;
            }
            tx.msgs.push(libc::mmsghdr {
                msg_hdr: hdr,
                msg_len: 0,
            });
        }
        let groups = tx.msgs.len();
        let mut sent_groups = 0usize;
        while sent_groups < groups {
            // SAFETY: msgs[sent_groups..] point at iovecs, addresses, control buffers and
            // buffer bytes that all outlive the call.
            let r = unsafe {
                libc::sendmmsg(
                    self.sock.as_raw_fd(),
                    tx.msgs[sent_groups..].as_mut_ptr(),
                    (groups - sent_groups) as libc::c_uint,
                    0,
                )
            };
            if r <= 0 {
                let e = io::Error::last_os_error().raw_os_error();
                if tx.udp_gso && matches!(e, Some(libc::EINVAL | libc::EIO | libc::EMSGSIZE)) {
                    // No UDP GSO here (or a datagram too big for it): send plainly from now on.
                    tx.udp_gso = false;
                }
                break; // drop the rest of the batch, as a full NIC queue would
            }
            sent_groups += r as usize;
        }
        let sent: usize = tx.groups[..sent_groups].iter().map(|g| g.1).sum();
        add(&self.counters.tx_errors, (ready - sent) as u64);
        add(&self.counters.tx_batches, 1);
        add(&self.counters.tx_packets, sent as u64);
        add(
            &self.counters.tx_bytes,
            if sent == ready { inner_bytes } else { 0 },
        );
    }

    /// Writes the outer header of an IPIP packet for the GRO device: the TOS copied from the
    /// inner header (RFC 2003) and no DF, as the kernel writes it for the raw socket.
    fn outer_header(&self, inner: &[u8], remote: u32, ident: u16, out: &mut [u8]) -> Result<()> {
        let h = Ipv4Header::parse(inner)?;
        let len = usize::from(h.total_len);
        let mut outer =
            Ipv4Header::new(self.config.local, remote, PROTO_IPIP, len, self.config.ttl)?;
        outer.tos = h.tos;
        outer.ident = ident;
        outer.write(out).map(|_| ())
    }

    /// Writes the batch's encapsulated packets one by one into the GRO device.
    fn write_gro(&self, gro: RawFd, tx: &TxBatch, inner_bytes: u64) {
        let mut sent = 0u64;
        for &(off, len) in &tx.spans {
            let pkt = &tx.buf[off..off + len];
            // SAFETY: write(2) only reads the live slice it is given.
            if unsafe { libc::write(gro, pkt.as_ptr().cast(), pkt.len()) } < 0 {
                add(&self.counters.tx_errors, 1);
            } else {
                sent += 1;
            }
        }
        add(&self.counters.tx_batches, 1);
        add(&self.counters.tx_packets, sent);
        let all = sent == tx.spans.len() as u64;
        add(&self.counters.tx_bytes, if all { inner_bytes } else { 0 });
    }

    /// Underlay → TUN.
    fn receive(self) {
        let batch = self.config.batch;
        let gro = self.config.offload
            && matches!(self.config.mode, TunnelMode::Vxlan { .. })
            && set_int_opt(self.sock.as_raw_fd(), libc::SOL_UDP, libc::UDP_GRO, 1).is_ok();
        // With UDP GRO one message may hold up to 64 KiB of back-to-back datagrams; an IPIP
        // packet may be a reassembled aggregate of up to 64 KiB.
        let slot = if gro || self.config.mode == TunnelMode::Ipip {
            MAX_TSO + 1
        } else {
            SLOT
        };
        let mut buf = vec![0u8; batch * slot];
        let mut controls = vec![[0u64; 4]; batch];
        // The kernel writes and this thread reads the buffers only through `base` and
        // `ctrl_base`, never through references, so the pointers stay valid throughout.
        let base = buf.as_mut_ptr();
        let ctrl_base = controls.as_mut_ptr();
        let mut iovs: Vec<libc::iovec> = (0..batch)
            .map(|i| libc::iovec {
                // SAFETY: slot i lies inside buf.
                iov_base: unsafe { base.add(i * slot) }.cast(),
                iov_len: slot,
            })
            .collect();
        let mut msgs: Vec<libc::mmsghdr> = iovs
            .iter_mut()
            .map(|iov| {
                // SAFETY: msghdr is plain data; all-zero is valid before we fill it.
                let mut hdr: libc::msghdr = unsafe { std::mem::zeroed() };
                hdr.msg_iov = iov;
                hdr.msg_iovlen = 1;
                libc::mmsghdr {
                    msg_hdr: hdr,
                    msg_len: 0,
                }
            })
            .collect();
        let mut rx = RxState {
            coalescer: TcpCoalescer::new(),
            segment: vec![0u8; SLOT],
            tun_mtu: 0,
        };
        let sock = self.sock.as_raw_fd();
        let tun = self.tun.as_raw_fd();
        while !self.stop.load(Ordering::Relaxed) {
            if !readable(sock) {
                continue;
            }
            if gro {
                for (i, m) in msgs.iter_mut().enumerate() {
                    // SAFETY: control buffer i lies inside `controls`.
                    m.msg_hdr.msg_control = unsafe { ctrl_base.add(i) }.cast();
                    m.msg_hdr.msg_controllen = std::mem::size_of::<[u64; 4]>() as _;
                }
            }
            // SAFETY: msgs point at iovecs and control buffers that are alive and unmoved.
            let n = unsafe {
                libc::recvmmsg(
                    sock,
                    msgs.as_mut_ptr(),
                    batch as libc::c_uint,
                    libc::MSG_DONTWAIT,
                    std::ptr::null_mut(),
                )
            };
            if n <= 0 {
                if n < 0 && io::Error::last_os_error().kind() != io::ErrorKind::WouldBlock {
                    add(&self.counters.rx_errors, 1);
                }
                continue;
            }
            add(&self.counters.rx_batches, 1);
            for (i, m) in msgs.iter_mut().take(n as usize).enumerate() {
                let len = (m.msg_len as usize).min(slot);
                let truncated = m.msg_hdr.msg_flags & libc::MSG_TRUNC != 0;
                m.msg_hdr.msg_flags = 0;
                let seg = if gro {
                    gro_size(&m.msg_hdr).unwrap_or(len)
                } else {
                    len
                };
                // SAFETY: slot i of buf, which the kernel has finished writing and nothing
                // else refers to until the next recvmmsg.
                let data = unsafe { std::slice::from_raw_parts_mut(base.add(i * slot), len) };
                if truncated || seg == 0 {
                    add(&self.counters.rx_malformed, 1);
                    continue;
                }
                for datagram in data.chunks_mut(seg) {
                    self.deliver(tun, datagram, &mut rx);
                }
            }
            self.flush_coalescer(tun, &mut rx.coalescer);
        }
        drop(buf); // keep the buffers alive (and unmoved) until here
        drop(controls);
    }

    /// Decapsulates one datagram and writes (or coalesces) its inner packet.
    fn deliver(&self, tun: RawFd, datagram: &mut [u8], rx: &mut RxState) {
        let Some((range, gso_size)) = self.inner_packet(datagram) else {
            add(&self.counters.rx_malformed, 1);
            return;
        };
        let inner = &mut datagram[range];
        let aggregate = match gso_size {
            Some(mss) => Some((usize::from(mss), false)),
            None => self.merged_mss(inner, rx).map(|mss| (mss, true)),
        };
        if let Some((mss, merged)) = aggregate {
            let coalescer = &mut rx.coalescer;
            self.flush_coalescer(tun, coalescer);
            if self
                .write_aggregate(tun, inner, mss, merged, &mut rx.segment)
                .is_err()
            {
                add(&self.counters.rx_malformed, 1);
            }
            return;
        }
        let coalescer = &mut rx.coalescer;
        add(&self.counters.rx_packets, 1);
        add(&self.counters.rx_bytes, inner.len() as u64);
        if !self.config.offload {
            self.tun_write(tun, None, inner);
        } else if !coalescer.append(inner) {
            self.flush_coalescer(tun, coalescer);
            if !coalescer.start(inner) {
                self.tun_write(tun, Some(&VnetHdr::default()), inner);
            }
        }
    }

    /// Writes what the coalescer holds, if anything, to the device.
    fn flush_coalescer(&self, tun: RawFd, coalescer: &mut TcpCoalescer) {
        if let Some((hdr, pkt)) = coalescer.take() {
            self.tun_write(tun, Some(&hdr), pkt);
        }
    }

    /// The segment size of `inner` when it is a TCP packet that GRO merged on the way (an
    /// IPIP packet without the segment-size option whose inner packet exceeds the TUN
    /// MTU): the largest that fits the TUN MTU, which is what the sending TCP used when
    /// both ends have the same MTU (a smaller guess is harmless, the packet is valid with
    /// either). The MTU is asked again whenever a packet exceeds the one known.
    fn merged_mss(&self, inner: &[u8], rx: &mut RxState) -> Option<usize> {
        if self.config.mode != TunnelMode::Ipip || inner.len() <= rx.tun_mtu {
            return None;
        }
        rx.tun_mtu = if_mtu(self.sock.as_raw_fd(), &self.config.tun_name)?;
        if inner.len() <= rx.tun_mtu {
            return None;
        }
        let ip = Ipv4Header::parse(inner).ok()?;
        let tcp_offset = usize::from(*inner.get(ip.header_len() + 12)? >> 4) * 4;
        let mss = rx.tun_mtu.checked_sub(ip.header_len() + tcp_offset)?;
        (ip.protocol == crate::packet::PROTO_TCP && mss >= MIN_MSS).then_some(mss)
    }

    /// Writes an IPIP aggregate (reassembled, or `merged` by GRO) to the device: as one
    /// GSO packet with offloads, else cut into its segments.
    fn write_aggregate(
        &self,
        tun: RawFd,
        inner: &mut [u8],
        mss: usize,
        merged: bool,
        segment: &mut [u8],
    ) -> Result<()> {
        if self.config.offload {
            let hdr = if merged {
                gro_tcpv4_header(inner, mss)?
            } else {
                gso_tcpv4_header(inner, mss)?
            };
            self.tun_write(tun, Some(&hdr), inner);
        } else {
            for k in 0..segment_count(inner, mss)? {
                let n = segment_tcpv4(inner, mss, k, segment)?;
                self.tun_write(tun, None, &segment[..n]);
            }
        }
        add(&self.counters.rx_packets, 1);
        add(&self.counters.rx_aggregates, 1);
        add(&self.counters.rx_bytes, inner.len() as u64);
        Ok(())
    }

    /// Writes one packet (behind a virtio-net header when offloads are on) to the device.
    fn tun_write(&self, tun: RawFd, hdr: Option<&VnetHdr>, packet: &[u8]) {
        let h = hdr.map(VnetHdr::to_bytes).unwrap_or_default();
        let iov = [
            libc::iovec {
                iov_base: h.as_ptr() as *mut libc::c_void,
                iov_len: if hdr.is_some() { VNET_HDR_LEN } else { 0 },
            },
            libc::iovec {
                iov_base: packet.as_ptr() as *mut libc::c_void,
                iov_len: packet.len(),
            },
        ];
        // SAFETY: writev(2) only reads the two live buffers described by `iov`.
        if unsafe { libc::writev(tun, iov.as_ptr(), 2) } < 0 {
            add(&self.counters.rx_errors, 1);
        }
    }

    /// Where the inner IPv4 packet of a received datagram lies, with the segment size of an
    /// IPIP aggregate, or `None` to drop it.
    fn inner_packet(&self, data: &[u8]) -> Option<(std::ops::Range<usize>, Option<u16>)> {
        match self.config.mode {
            TunnelMode::Vxlan { vni, .. } => {
                if parse_vxlan_header(data).ok()? != vni {
                    return None;
                }
                let eth_type = data.get(VXLAN_HEADER_LEN + 12..VXLAN_HEADER_LEN + 14)?;
                if u16::from_be_bytes([eth_type[0], eth_type[1]]) != ETHERTYPE_IPV4 {
                    return None;
                }
                Some((VXLAN_PREFIX..data.len(), None))
            }
            TunnelMode::Ipip => {
                let d = ipip_decap(data).ok()?;
                let range = d.inner_offset..d.inner_offset + d.inner_len;
                data.get(range.clone())?;
                Some((range, d.gso_size))
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn config(mode: TunnelMode) -> EngineConfig {
        EngineConfig {
            tun_name: "kt-test0".into(),
            mode,
            local: 0x7f00_0001,
            netns: None,
            batch: 32,
            ttl: 64,
            offload: true,
            outer_fragments: true,
            gro_send: true,
        }
    }

    #[test]
    fn validates_config() {
        let mut c = config(TunnelMode::Ipip);
        c.tun_name = "a-name-that-is-far-too-long".into();
        assert!(TunnelEngine::new(c).is_err());
        let mut c = config(TunnelMode::Ipip);
        c.batch = 0;
        assert!(TunnelEngine::new(c).is_err());
        assert!(TunnelEngine::new(config(TunnelMode::Vxlan {
            vni: 1 << 24,
            port: 4789
        }))
        .is_err());
        let e = TunnelEngine::new(config(TunnelMode::Vxlan { vni: 1, port: 4789 })).unwrap();
        assert!(!e.is_running());
        assert_eq!(e.stats(), EngineStats::default());
    }

    #[test]
    fn routes_update() {
        let e = TunnelEngine::new(config(TunnelMode::Ipip)).unwrap();
        assert_eq!(e.add_route(0x0af4_0200, 24, 7).unwrap(), None);
        assert_eq!(e.add_route(0x0af4_0200, 24, 8).unwrap(), Some(7));
        assert_eq!(e.remove_route(0x0af4_0200, 24).unwrap(), Some(8));
        assert!(e.add_route(1, 24, 1).is_err());
    }

    #[test]
    fn missing_netns_is_an_error() {
        let mut c = config(TunnelMode::Ipip);
        c.netns = Some("kubetrio-no-such-netns".into());
        let e = TunnelEngine::new(c).unwrap();
        assert!(matches!(e.start(), Err(Error::Io(_))));
        assert!(!e.is_running());
    }

    #[test]
    fn long_tso_packets_are_cut_into_aggregates_that_fit() {
        use crate::packet::tcp::{build_tcp_segment, parse_tcp_segment, TcpHeader};
        let h = TcpHeader {
            src_port: 1,
            dst_port: 2,
            seq: 9,
            ack: 0,
            data_offset: 5,
            flags: 0x10,
            window: 1,
            checksum: 0,
            urgent: 0,
        };
        let payload: Vec<u8> = (0..MAX_TSO - 40).map(|i| i as u8).collect();
        let mut big = vec![0u8; MAX_TSO];
        build_tcp_segment(1, 2, &h, &payload, 64, &mut big).unwrap();
        assert!(big.len() > MAX_AGGREGATE);
        for mss in [536u16, 1428, 1448, 8948] {
            let chunk = aggregate_payload(mss);
            assert_eq!(chunk % usize::from(mss), 0);
            let mut out = vec![0u8; MAX_TSO];
            let mut stream = Vec::new();
            for k in 0..segment_count(&big, chunk).unwrap() {
                let n = segment_tcpv4(&big, chunk, k, &mut out).unwrap();
                assert!(n <= MAX_AGGREGATE, "mss {mss}: part of {n} bytes");
                let s = parse_tcp_segment(&out[..n]).unwrap();
                stream.extend_from_slice(&out[s.payload_offset..n]);
            }
            assert_eq!(stream, payload);
        }
    }

    #[test]
    fn inner_packet_checks_vni_and_ethertype() {
        let w = Worker {
            config: config(TunnelMode::Vxlan { vni: 5, port: 4789 }),
            tun: Arc::new(File::open("/dev/null").unwrap().into()),
            sock: Arc::new(File::open("/dev/null").unwrap().into()),
            gro: None,
            routes: Arc::default(),
            counters: Arc::default(),
            stop: Arc::default(),
        };
        let mut d = vec![0u8; 8 + 14 + 20];
        write_vxlan_header(5, &mut d).unwrap();
        d[8 + 12] = 0x08;
        assert_eq!(w.inner_packet(&d).map(|(p, _)| p.len()), Some(20));
        write_vxlan_header(6, &mut d).unwrap();
        assert!(w.inner_packet(&d).is_none());
        write_vxlan_header(5, &mut d).unwrap();
        d[8 + 12] = 0x86;
        assert!(w.inner_packet(&d).is_none());
        assert!(w.inner_packet(&d[..10]).is_none());
    }
}
