//! Idle keep-alive connections to one upstream address, kept for the direct
//! exchange (`http1::exchange`). A stack, newest on top: a busy gateway reuses
//! the warmest connection, and the ones at the bottom age out.

use super::Conn;
use std::sync::{Mutex, PoisonError};
use std::time::{Duration, Instant};

/// Idle connections kept per address; one more closes the oldest. Enough for
/// the concurrency of a busy edge without holding a file per past burst.
const MAX_IDLE: usize = 256;

#[derive(Default)]
pub struct Idle {
    stack: Mutex<Vec<(Conn, Instant)>>,
}

impl Idle {
    /// The most recently returned connection that is still fit for a request:
    /// idle for less than `max_idle`, and with nothing to read. An idle
    /// connection only becomes readable when the upstream closed it or sent
    /// bytes nobody asked for; either way it must not carry a request.
    pub fn take(&self, max_idle: Duration) -> Option<Conn> {
        let now = Instant::now();
        let mut stale = Vec::new();
        let found = {
            let mut stack = self.stack.lock().unwrap_or_else(PoisonError::into_inner);
            loop {
                let Some((mut conn, since)) = stack.pop() else {
                    break None;
                };
                if now.saturating_duration_since(since) > max_idle {
                    // Everything below is older still.
                    stale.push(conn);
                    stale.extend(stack.drain(..).map(|(c, _)| c));
                    break None;
                }
                if conn.is_quiet() {
                    break Some(conn);
                }
                stale.push(conn);
            }
        };
        // Closed outside the lock: a close is a system call.
        drop(stale);
        found
    }

    /// Keeps `conn` for the next request to this address.
    pub fn put(&self, conn: Conn) {
        let oldest = {
            let mut stack = self.stack.lock().unwrap_or_else(PoisonError::into_inner);
            let oldest = (stack.len() >= MAX_IDLE).then(|| stack.remove(0));
            stack.push((conn, Instant::now()));
            oldest
        };
        drop(oldest);
    }

    #[cfg(test)]
    fn len(&self) -> usize {
        self.stack.lock().unwrap().len()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use tokio::io::AsyncWriteExt;
    use tokio::net::{TcpListener, TcpStream};

    async fn pair(listener: &TcpListener) -> (Conn, TcpStream) {
        let addr = listener.local_addr().unwrap();
        let (client, server) = tokio::join!(TcpStream::connect(addr), listener.accept());
        (Conn::Plain(client.unwrap()), server.unwrap().0)
    }

    fn port(conn: &Conn) -> u16 {
        match conn {
            Conn::Plain(tcp) => tcp.local_addr().unwrap().port(),
            Conn::Tls(_) => unreachable!("these tests hold plain connections"),
        }
    }

    #[tokio::test]
    async fn a_connection_the_upstream_closed_or_wrote_to_is_never_handed_out() {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let idle = Idle::default();
        let (open, _open_server) = pair(&listener).await;
        let (closed, closed_server) = pair(&listener).await;
        let (chatty, mut chatty_server) = pair(&listener).await;
        let open_port = port(&open);
        idle.put(open);
        idle.put(closed);
        idle.put(chatty);
        drop(closed_server);
        chatty_server
            .write_all(b"HTTP/1.1 200 OK\r\n")
            .await
            .unwrap();
        tokio::time::sleep(Duration::from_millis(50)).await;

        let taken = idle.take(Duration::from_secs(60)).expect("the open one");
        assert_eq!(port(&taken), open_port);
        assert!(idle.take(Duration::from_secs(60)).is_none());
        assert_eq!(idle.len(), 0);
    }

    #[tokio::test]
    async fn connections_idle_too_long_are_dropped_with_everything_older() {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let idle = Idle::default();
        let (a, _a) = pair(&listener).await;
        let (b, _b) = pair(&listener).await;
        idle.put(a);
        idle.put(b);
        tokio::time::sleep(Duration::from_millis(30)).await;
        assert!(idle.take(Duration::from_millis(10)).is_none());
        assert_eq!(idle.len(), 0);

        let (c, _c) = pair(&listener).await;
        idle.put(c);
        assert!(idle.take(Duration::from_secs(60)).is_some());
    }

    #[tokio::test]
    async fn at_most_max_idle_are_kept_and_the_oldest_go_first() {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let idle = Idle::default();
        let mut servers = Vec::new();
        let mut first_port = 0;
        for i in 0..MAX_IDLE + 1 {
            let (conn, server) = pair(&listener).await;
            if i == 0 {
                first_port = port(&conn);
            }
            servers.push(server);
            idle.put(conn);
        }
        assert_eq!(idle.len(), MAX_IDLE);
        let mut ports = Vec::new();
        while let Some(conn) = idle.take(Duration::from_secs(60)) {
            ports.push(port(&conn));
        }
        assert_eq!(ports.len(), MAX_IDLE);
        assert!(!ports.contains(&first_port));
    }
}
