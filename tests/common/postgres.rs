//! PostgreSQL for integration tests: a throwaway schema per test on the server named by
//! `PORTCULLIS_TEST_POSTGRES`, and a TCP relay in front of the server that a test can cut
//! to simulate an outage without touching the shared server.

use std::io::{Read, Write};
use std::net::{Shutdown, SocketAddr, TcpListener, TcpStream, ToSocketAddrs};
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::thread;

use sqlx::{AssertSqlSafe, Connection, Executor, PgConnection};

/// The server URL from `PORTCULLIS_TEST_POSTGRES`, or `None` after printing why the
/// calling test is skipped.
pub fn server_url() -> Option<String> {
    match std::env::var("PORTCULLIS_TEST_POSTGRES") {
        Ok(url) if !url.is_empty() => Some(url),
        _ => {
            println!("skipped: PORTCULLIS_TEST_POSTGRES not set");
            None
        }
    }
}

/// A schema of its own on the test server, dropped (with everything in it) on drop.
pub struct Schema {
    pub name: String,
    server: String,
    runtime: tokio::runtime::Runtime,
}

impl Schema {
    /// Creates `portcullis_it_<random>` on `server`.
    pub fn create(server: &str) -> Schema {
        static N: AtomicUsize = AtomicUsize::new(0);
        let name = format!(
            "portcullis_it_{}_{}_{}",
            std::process::id(),
            N.fetch_add(1, Ordering::Relaxed),
            super::now()
        );
        let runtime = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .expect("a runtime for the schema's own connection");
        let schema = Schema {
            name,
            server: server.to_owned(),
            runtime,
        };
        schema.execute(&format!("CREATE SCHEMA {}", schema.name));
        schema
    }

    /// The store URL of this schema on the server itself.
    pub fn url(&self) -> String {
        self.url_on(&self.server)
    }

    /// The store URL of this schema reached through `relay` instead of directly.
    pub fn url_via(&self, relay: &Relay) -> String {
        let authority = server_authority(&self.server);
        let host_port = authority.rsplit('@').next().unwrap_or(authority);
        self.url_on(&self.server.replacen(host_port, &relay.addr.to_string(), 1))
    }

    fn url_on(&self, server: &str) -> String {
        let separator = if server.contains('?') { '&' } else { '?' };
        format!(
            "{server}{separator}options=-c%20search_path%3D{}",
            self.name
        )
    }

    /// Runs one statement on the server (outside the schema's search path).
    pub fn execute(&self, sql: &str) {
        self.runtime.block_on(async {
            let mut conn = PgConnection::connect(&self.server)
                .await
                .expect("connect to PORTCULLIS_TEST_POSTGRES");
            conn.execute(AssertSqlSafe(sql.to_owned()))
                .await
                .unwrap_or_else(|e| panic!("{sql}: {e}"));
            let _ = conn.close().await;
        });
    }
}

impl Drop for Schema {
    fn drop(&mut self) {
        let name = self.name.clone();
        self.runtime.block_on(async {
            if let Ok(mut conn) = PgConnection::connect(&self.server).await {
                let sql = format!("DROP SCHEMA IF EXISTS {name} CASCADE");
                if let Err(e) = conn.execute(AssertSqlSafe(sql)).await {
                    eprintln!("could not drop schema {name}: {e}");
                }
                let _ = conn.close().await;
            }
        });
    }
}

/// `user@host:port` of a `postgres://user@host:port/db?...` URL.
fn server_authority(url: &str) -> &str {
    let rest = url.split_once("://").map_or(url, |(_, rest)| rest);
    rest.split(['/', '?']).next().unwrap_or(rest)
}

/// The server's socket address, for the relay to dial.
pub fn server_addr(url: &str) -> SocketAddr {
    let authority = server_authority(url);
    let host_port = authority.rsplit('@').next().unwrap_or(authority);
    let with_port = if host_port.contains(':') {
        host_port.to_owned()
    } else {
        format!("{host_port}:5432")
    };
    with_port
        .to_socket_addrs()
        .ok()
        .and_then(|mut addrs| addrs.next())
        .unwrap_or_else(|| panic!("cannot resolve {with_port}"))
}

/// A TCP relay to `target` that can be cut (every open connection shut, new ones closed
/// at once, as when the database host goes away) and restored. Stopped on drop.
pub struct Relay {
    pub addr: SocketAddr,
    down: Arc<AtomicBool>,
    stopped: Arc<AtomicBool>,
    open: Arc<Mutex<Vec<TcpStream>>>,
    acceptor: Option<thread::JoinHandle<()>>,
}

impl Relay {
    pub fn start(target: SocketAddr) -> Relay {
        let listener = TcpListener::bind("127.0.0.1:0").expect("bind the relay");
        let addr = listener.local_addr().expect("relay address");
        let down = Arc::new(AtomicBool::new(false));
        let stopped = Arc::new(AtomicBool::new(false));
        let open: Arc<Mutex<Vec<TcpStream>>> = Arc::new(Mutex::new(Vec::new()));
        let acceptor = {
            let (down, stopped, open) = (down.clone(), stopped.clone(), open.clone());
            thread::spawn(move || {
                for client in listener.incoming() {
                    if stopped.load(Ordering::SeqCst) {
                        return;
                    }
                    let Ok(client) = client else { continue };
                    if down.load(Ordering::SeqCst) {
                        let _ = client.shutdown(Shutdown::Both);
                        continue;
                    }
                    let Ok(server) = TcpStream::connect(target) else {
                        continue;
                    };
                    relay_pair(client, server, &open);
                }
            })
        };
        Relay {
            addr,
            down,
            stopped,
            open,
            acceptor: Some(acceptor),
        }
    }

    /// The outage: open connections are shut and new ones are closed on arrival.
    pub fn cut(&self) {
        self.down.store(true, Ordering::SeqCst);
        for stream in self.open.lock().expect("relay lock").drain(..) {
            let _ = stream.shutdown(Shutdown::Both);
        }
    }

    /// The recovery: new connections reach the server again.
    pub fn restore(&self) {
        self.down.store(false, Ordering::SeqCst);
    }
}

impl Drop for Relay {
    fn drop(&mut self) {
        self.stopped.store(true, Ordering::SeqCst);
        self.cut();
        // Wake the acceptor so it sees `stopped`.
        let _ = TcpStream::connect(self.addr);
        if let Some(acceptor) = self.acceptor.take() {
            let _ = acceptor.join();
        }
    }
}

/// Copies both ways on two threads; both sockets are remembered so `cut` can shut them.
fn relay_pair(client: TcpStream, server: TcpStream, open: &Mutex<Vec<TcpStream>>) {
    let (Ok(client2), Ok(server2)) = (client.try_clone(), server.try_clone()) else {
        return;
    };
    {
        let mut open = open.lock().expect("relay lock");
        for s in [&client, &server] {
            if let Ok(s) = s.try_clone() {
                open.push(s);
            }
        }
    }
    thread::spawn(move || copy(client, server2));
    thread::spawn(move || copy(server, client2));
}

fn copy(mut from: TcpStream, mut to: TcpStream) {
    let mut buf = [0u8; 16 * 1024];
    loop {
        match from.read(&mut buf) {
            Ok(0) | Err(_) => break,
            Ok(n) => {
                if to.write_all(&buf[..n]).is_err() {
                    break;
                }
            }
        }
    }
    let _ = to.shutdown(Shutdown::Both);
    let _ = from.shutdown(Shutdown::Both);
}
