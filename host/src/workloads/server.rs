//! `server`: thousands of goroutines serving requests over channels and real sockets.
//!
//! [`connections`] goroutines (default 10,000) each serve one connection, Go's goroutine per
//! connection, parked until a request comes. Client goroutines, two per P, send requests
//! round-robin over the connections, each waiting for its answer before it sends the next
//! (a closed loop). A request crosses a real socket both ways, inside
//! [`blocking`](runtime::blocking) sections:
//!
//! 1. the client writes the request (its id and a sequence number) into its end
//!    of its socketpair, then hands the connection goroutine its link over the connection's
//!    channel, which stands in for Go's netpoller saying "readable";
//! 2. the connection goroutine reads the request from the socket, computes the answer (a few
//!    units of work, polling), writes the response, and signals the client on the client's
//!    reply channel;
//! 3. the client reads the response from its socket.
//!
//! A socketpair per client, not per connection: sockets cost file descriptors, and 10,000
//! pairs would pass most systems' limit.
//!
//! Latency is from the client's write to its read of the response, filed under the phase in
//! which the request ends: the main phase, with a barrier every 200 µs, or the quiet phase,
//! without any, so that a barrier's cost shows as tail latency (requests that end while the
//! server starts up are answered and checked, not timed).
//!
//! Checks: every response names its request (client, connection, sequence number) and
//! carries its answer; after shutdown, requests sent, answered and served agree, every
//! goroutine has ended, every link was released by every goroutine, and each socket's peer
//! reads end-of-file with no byte left over (no response was written twice) before both ends
//! are closed.
//!
//! [`connections`]: super::WorkloadParams::connections

use std::fmt;
use std::io::{ErrorKind, Read, Write};
use std::os::unix::net::UnixStream;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::{Duration, Instant};

use hdrhistogram::Histogram;

use crate::runtime::lock::Mutex;
use crate::runtime::{self, Chan, Runtime, WaitGroup};

use super::{
    Phase, PhaseFlag, Phases, RunError, WorkloadMetric, WorkloadParams, WorkloadReport,
    latency_histogram, quantiles, work,
};

pub(super) const DESCRIPTION: &str = "connection goroutines (--connections) serve requests over \
     channels and socketpairs in blocking sections; reports request latency with and without \
     barriers";

/// The requester's barriers arrive this far apart in the main phase, as a GC's would while
/// requests are in flight: back to back, they would only measure a P taken from the server.
pub(super) const BARRIER_INTERVAL: Duration = Duration::from_micros(200);
/// Units of [`work`] per request, a poll after each: about 1.5 µs.
const SERVICE_UNITS: u32 = 16;
/// The most client goroutines (and socketpairs).
const MAX_CLIENTS: usize = 64;
/// How long shutdown waits for a socket's peer to read end-of-file.
const EOF_WAIT: Duration = Duration::from_secs(5);

/// A request: the client and its sequence number.
const REQUEST_BYTES: usize = 16;
/// A response: the client, the connection that served it, the sequence number, the answer.
const RESPONSE_BYTES: usize = 32;
/// The reply that tells a client its request failed and no response will come.
const FAILED: u64 = u64::MAX;

/// A failure of the server, or a broken invariant.
#[derive(Debug, thiserror::Error)]
pub enum ServerError {
    /// A socket call failed.
    #[error("server: {what} on the socket of client {client} failed: {source}")]
    Io {
        /// The call.
        what: &'static str,
        /// The client whose socketpair it was.
        client: u32,
        /// The error.
        #[source]
        source: std::io::Error,
    },
    /// A response did not match the request in flight.
    #[error(
        "server: client {client} waits for the response to request {seq} on connection {conn}, \
         but read {found:?} (client, connection, sequence, answer)"
    )]
    WrongResponse {
        /// The client.
        client: u32,
        /// The connection its request went to.
        conn: u32,
        /// The request's sequence number.
        seq: u64,
        /// What it read.
        found: [u64; 4],
    },
    /// The reply channel named another request than the one in flight.
    #[error(
        "server: client {client} waits for the reply to request {seq}, but its channel gave {reply:?}"
    )]
    WrongReply {
        /// The client.
        client: u32,
        /// The request in flight.
        seq: u64,
        /// What the channel gave (`None`: closed).
        reply: Option<u64>,
    },
    /// The counts of requests do not agree.
    #[error(
        "server: {sent} requests sent, {answered} answered, {served} served by connections; \
         every request must be answered once"
    )]
    Unbalanced {
        /// Requests the clients sent.
        sent: u64,
        /// Responses the clients read.
        answered: u64,
        /// Requests the connection goroutines served.
        served: u64,
    },
    /// Goroutines did not all end.
    #[error("server: {ended} of {started} {what} goroutines ended")]
    NotEnded {
        /// Which ones.
        what: &'static str,
        /// How many started.
        started: u64,
        /// How many ended.
        ended: u64,
    },
    /// After shutdown, something still held a client's socketpair.
    #[error("server: the socketpair of client {client} is still held after shutdown")]
    StillHeld {
        /// The client.
        client: u32,
    },
    /// After shutdown, a socket did not read end-of-file: bytes were left over, or the peer
    /// was not closed.
    #[error(
        "server: client {client}'s socket read {detail} after the server's end was closed, not end-of-file"
    )]
    NoEof {
        /// The client.
        client: u32,
        /// What it read instead.
        detail: String,
    },
}

/// What `server` measured.
#[derive(Clone, Debug)]
pub struct ServerReport {
    /// Connection goroutines.
    pub connections: usize,
    /// Client goroutines, each with a socketpair.
    pub clients: usize,
    /// Requests answered, each exactly once.
    pub requests: u64,
    /// Latency of the requests that ended in the main phase, nanoseconds.
    pub latency: Histogram<u64>,
    /// Latency of the requests that ended in the quiet phase (no barriers), nanoseconds.
    pub quiet_latency: Option<Histogram<u64>>,
    /// Goroutines that ended at shutdown: every connection and every client.
    pub goroutines_ended: u64,
    /// Sockets closed at shutdown, each after its peer read end-of-file.
    pub sockets_closed: u64,
}

impl fmt::Display for ServerReport {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        writeln!(
            f,
            "  server           {} connection goroutines, {} clients: {} requests, each answered once",
            self.connections, self.clients, self.requests
        )?;
        writeln!(
            f,
            "    latency with barriers      {} ({} requests)",
            quantiles(&self.latency),
            self.latency.len()
        )?;
        match &self.quiet_latency {
            Some(h) => writeln!(
                f,
                "    latency without barriers   {} ({} requests)",
                quantiles(h),
                h.len()
            )?,
            None => writeln!(
                f,
                "    latency without barriers   (no quiet phase: no barriers)"
            )?,
        }
        writeln!(
            f,
            "    shutdown         {} goroutines ended, {} sockets closed (each peer read end-of-file)",
            self.goroutines_ended, self.sockets_closed
        )
    }
}

/// One client's socketpair and reply channel.
struct Link {
    client: u32,
    /// The client's end.
    near: UnixStream,
    /// The server's end.
    far: UnixStream,
    /// Sequence numbers answered, or [`FAILED`].
    reply: Chan<u64>,
}

/// A client's figures, handed over as it exits.
struct ClientTally {
    sent: u64,
    answered: u64,
    /// Latency of the requests that ended in the main phase, and in the quiet phase.
    latency: [Histogram<u64>; 2],
}

/// What the goroutines share.
struct Shared {
    conns: Box<[Chan<Arc<Link>>]>,
    phase: Arc<PhaseFlag>,
    stop: AtomicBool,
    served: AtomicU64,
    eintrs: AtomicU64,
    conns_ended: AtomicU64,
    clients: Mutex<Vec<ClientTally>>,
    failure: Mutex<Option<ServerError>>,
}

impl Shared {
    fn fail(&self, e: ServerError) {
        self.failure.lock().get_or_insert(e);
    }

    fn failed(&self) -> bool {
        self.failure.lock().is_some()
    }
}

/// The running server.
pub(super) struct Server {
    shared: Arc<Shared>,
    links: Vec<Arc<Link>>,
    conns_done: WaitGroup,
    clients_done: WaitGroup,
}

impl Server {
    pub(super) fn start(
        rt: &Runtime,
        params: &WorkloadParams,
        phase: &Arc<PhaseFlag>,
    ) -> Result<Server, RunError> {
        let connections = params.connections.max(1);
        let clients = (2 * rt.procs()).clamp(2, MAX_CLIENTS);
        let mut links = Vec::with_capacity(clients);
        for client in 0..clients as u32 {
            let (near, far) = UnixStream::pair().map_err(|source| ServerError::Io {
                what: "socketpair",
                client,
                source,
            })?;
            links.push(Arc::new(Link {
                client,
                near,
                far,
                reply: Chan::bounded(1),
            }));
        }
        let shared = Arc::new(Shared {
            conns: (0..connections).map(|_| Chan::bounded(1)).collect(),
            phase: Arc::clone(phase),
            stop: AtomicBool::new(false),
            served: AtomicU64::new(0),
            eintrs: AtomicU64::new(0),
            conns_ended: AtomicU64::new(0),
            clients: Mutex::new(Vec::with_capacity(clients)),
            failure: Mutex::new(None),
        });
        let server = Server {
            shared,
            links,
            conns_done: WaitGroup::new(),
            clients_done: WaitGroup::new(),
        };
        server.conns_done.add(connections);
        for conn in 0..connections {
            let (shared, done) = (Arc::clone(&server.shared), server.conns_done.clone());
            rt.spawn("server connection", move || {
                serve(&shared, conn as u32);
                shared.conns_ended.fetch_add(1, Ordering::Relaxed);
                done.done();
            });
        }
        server.clients_done.add(clients);
        for link in &server.links {
            let (shared, done, link) = (
                Arc::clone(&server.shared),
                server.clients_done.clone(),
                Arc::clone(link),
            );
            rt.spawn("server client", move || {
                let tally = client(&shared, &link, clients);
                // Released before `done`: shutdown then holds the only reference.
                drop(link);
                shared.clients.lock().push(tally);
                done.done();
            });
        }
        Ok(server)
    }

    /// Stops the clients, then the connections, and checks that every request was answered
    /// once and every goroutine and socket is gone.
    pub(super) fn stop(self, phases: Phases) -> Result<WorkloadReport, RunError> {
        let Server {
            shared,
            links,
            conns_done,
            clients_done,
        } = self;
        shared.stop.store(true, Ordering::Relaxed);
        clients_done.wait();
        for conn in shared.conns.iter() {
            conn.close();
        }
        conns_done.wait();
        let connections = shared.conns.len() as u64;
        let tallies = std::mem::take(&mut *shared.clients.lock());
        let mut sockets_closed = 0;
        let clients = links.len();
        for link in links {
            sockets_closed += close(link)?;
        }
        if let Some(e) = shared.failure.lock().take() {
            return Err(e.into());
        }
        let ended = shared.conns_ended.load(Ordering::Relaxed);
        if ended != connections {
            return Err(ServerError::NotEnded {
                what: "connection",
                started: connections,
                ended,
            }
            .into());
        }
        if tallies.len() != clients {
            return Err(ServerError::NotEnded {
                what: "client",
                started: clients as u64,
                ended: tallies.len() as u64,
            }
            .into());
        }
        let (mut sent, mut answered) = (0, 0);
        let (mut latency, mut quiet) = (latency_histogram(), latency_histogram());
        for t in &tallies {
            sent += t.sent;
            answered += t.answered;
            latency.add(&t.latency[0]).expect("same bounds");
            quiet.add(&t.latency[1]).expect("same bounds");
        }
        let served = shared.served.load(Ordering::Relaxed);
        if sent != answered || answered != served {
            return Err(ServerError::Unbalanced {
                sent,
                answered,
                served,
            }
            .into());
        }
        Ok(WorkloadReport {
            work_units: latency.len(),
            elapsed: phases.main,
            eintrs: shared.eintrs.load(Ordering::Relaxed),
            gc: None,
            metric: Some(WorkloadMetric::Server(ServerReport {
                connections: connections as usize,
                clients,
                requests: answered,
                latency,
                quiet_latency: phases.quiet.map(|_| quiet),
                goroutines_ended: ended + clients as u64,
                sockets_closed,
            })),
        })
    }
}

/// A connection goroutine: serves each request handed to it until its channel closes.
fn serve(shared: &Shared, conn: u32) {
    let mut eintrs = 0;
    while let Some(link) = shared.conns[conn as usize].recv() {
        let reply = match answer(&link, conn, &mut eintrs) {
            Ok(seq) => {
                shared.served.fetch_add(1, Ordering::Relaxed);
                seq
            }
            Err(e) => {
                shared.fail(e);
                FAILED
            }
        };
        // Never full: a client has one request in flight.
        let _ = link.reply.send(reply);
    }
    shared.eintrs.fetch_add(eintrs, Ordering::Relaxed);
}

/// Reads one request from the link's socket and writes its response; returns its sequence
/// number.
fn answer(link: &Link, conn: u32, eintrs: &mut u64) -> Result<u64, ServerError> {
    let io = |what| {
        move |source| ServerError::Io {
            what,
            client: link.client,
            source,
        }
    };
    let mut request = [0u8; REQUEST_BYTES];
    runtime::blocking(|| read_full(&link.far, &mut request, eintrs)).map_err(io("read"))?;
    let [client, seq] = decode(&request);
    // The service's cost; its answer is one the client can check cheaply.
    let mut x = seq;
    for _ in 0..SERVICE_UNITS {
        x = work(x);
        runtime::poll();
    }
    std::hint::black_box(x);
    let response: [u8; RESPONSE_BYTES] =
        encode(&[client, u64::from(conn), seq, expected_answer(client, seq)]);
    runtime::blocking(|| write_full(&link.far, &response, eintrs)).map_err(io("write"))?;
    Ok(seq)
}

/// A client goroutine: requests and responses in a closed loop until told to stop.
fn client(shared: &Shared, link: &Arc<Link>, clients: usize) -> ClientTally {
    let mut tally = ClientTally {
        sent: 0,
        answered: 0,
        latency: [latency_histogram(), latency_histogram()],
    };
    let connections = shared.conns.len();
    let mut conn = link.client as usize % connections;
    let mut eintrs = 0;
    while !shared.stop.load(Ordering::Relaxed) && !shared.failed() {
        match request(shared, link, conn as u32, tally.sent, &mut eintrs) {
            Ok(latency) => {
                tally.answered += 1;
                let nanos = latency.as_nanos() as u64;
                match shared.phase.get() {
                    Phase::Starting => {}
                    Phase::Main => tally.latency[0].saturating_record(nanos),
                    Phase::Quiet => tally.latency[1].saturating_record(nanos),
                }
            }
            Err(e) => shared.fail(e),
        }
        tally.sent += 1;
        conn = (conn + clients) % connections;
    }
    shared.eintrs.fetch_add(eintrs, Ordering::Relaxed);
    tally
}

/// One request to `conn`, and its response; returns its latency.
fn request(
    shared: &Shared,
    link: &Arc<Link>,
    conn: u32,
    seq: u64,
    eintrs: &mut u64,
) -> Result<Duration, ServerError> {
    let io = |what| {
        move |source| ServerError::Io {
            what,
            client: link.client,
            source,
        }
    };
    let started = Instant::now();
    let request: [u8; REQUEST_BYTES] = encode(&[u64::from(link.client), seq]);
    runtime::blocking(|| write_full(&link.near, &request, eintrs)).map_err(io("write"))?;
    if shared.conns[conn as usize].send(Arc::clone(link)).is_err() {
        unreachable!("connection channels close only once every client has stopped");
    }
    match link.reply.recv() {
        Some(FAILED) => {
            return Err(ServerError::Io {
                what: "serve",
                client: link.client,
                source: std::io::Error::other("the connection goroutine failed"),
            });
        }
        Some(answered) if answered == seq => {}
        reply => {
            return Err(ServerError::WrongReply {
                client: link.client,
                seq,
                reply,
            });
        }
    }
    let mut response = [0u8; RESPONSE_BYTES];
    runtime::blocking(|| read_full(&link.near, &mut response, eintrs)).map_err(io("read"))?;
    let found: [u64; 4] = decode(&response);
    let client = u64::from(link.client);
    if found != [client, u64::from(conn), seq, expected_answer(client, seq)] {
        return Err(ServerError::WrongResponse {
            client: link.client,
            conn,
            seq,
            found,
        });
    }
    Ok(started.elapsed())
}

/// Closes a client's socketpair after shutdown: nothing else may hold it, the reply channel
/// must be empty, and once the server's end is closed the client's end must read
/// end-of-file. Returns the sockets closed.
fn close(link: Arc<Link>) -> Result<u64, ServerError> {
    let client = link.client;
    let link = Arc::into_inner(link).ok_or(ServerError::StillHeld { client })?;
    link.reply.close();
    if let Some(extra) = link.reply.recv() {
        return Err(ServerError::NoEof {
            client,
            detail: format!("an extra reply ({extra}) on its channel"),
        });
    }
    drop(link.far);
    let io = |what| {
        move |source| ServerError::Io {
            what,
            client,
            source,
        }
    };
    link.near
        .set_read_timeout(Some(EOF_WAIT))
        .map_err(io("set_read_timeout"))?;
    let mut byte = [0u8; 1];
    match (&link.near).read(&mut byte) {
        Ok(0) => Ok(2),
        Ok(_) => Err(ServerError::NoEof {
            client,
            detail: "a byte left over".to_owned(),
        }),
        Err(e) => Err(ServerError::NoEof {
            client,
            detail: format!("an error ({e})"),
        }),
    }
}

/// `read_exact`, counting the reads a signal interrupted.
fn read_full(mut socket: &UnixStream, buf: &mut [u8], eintrs: &mut u64) -> std::io::Result<()> {
    let mut filled = 0;
    while filled < buf.len() {
        match socket.read(&mut buf[filled..]) {
            Ok(0) => return Err(ErrorKind::UnexpectedEof.into()),
            Ok(n) => filled += n,
            Err(e) if e.kind() == ErrorKind::Interrupted => *eintrs += 1,
            Err(e) => return Err(e),
        }
    }
    Ok(())
}

/// `write_all`, counting the writes a signal interrupted.
fn write_full(mut socket: &UnixStream, buf: &[u8], eintrs: &mut u64) -> std::io::Result<()> {
    let mut written = 0;
    while written < buf.len() {
        match socket.write(&buf[written..]) {
            Ok(0) => return Err(ErrorKind::WriteZero.into()),
            Ok(n) => written += n,
            Err(e) if e.kind() == ErrorKind::Interrupted => *eintrs += 1,
            Err(e) => return Err(e),
        }
    }
    Ok(())
}

/// The answer to request `seq` of `client`.
fn expected_answer(client: u64, seq: u64) -> u64 {
    (seq ^ (client << 48)).wrapping_mul(0x9e37_79b9_7f4a_7c15)
}

/// Little-endian words.
fn encode<const N: usize, const BYTES: usize>(words: &[u64; N]) -> [u8; BYTES] {
    let mut bytes = [0u8; BYTES];
    for (chunk, w) in bytes.chunks_exact_mut(8).zip(words) {
        chunk.copy_from_slice(&w.to_le_bytes());
    }
    bytes
}

fn decode<const N: usize, const BYTES: usize>(bytes: &[u8; BYTES]) -> [u64; N] {
    let mut words = [0u64; N];
    for (w, chunk) in words.iter_mut().zip(bytes.chunks_exact(8)) {
        *w = u64::from_le_bytes(chunk.try_into().expect("8 bytes"));
    }
    words
}
