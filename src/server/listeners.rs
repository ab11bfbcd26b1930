//! The gateway's listening sockets, bound before pingora starts. Pingora binds
//! inside its service threads: a port in use is retried there for 30 s, and any
//! bind failure then panics that thread while the rest of the process runs on
//! and `/readyz` answers 200. Bound here, a port in use, a port the process may
//! not open or an address this host does not have is one line and exit status 1
//! at once; pingora then serves on these sockets instead of binding its own.

use async_trait::async_trait;
use pingora::server::{Fds, ListenFds, ShutdownWatch};
use pingora::services::Service;
use std::net::{SocketAddr, TcpListener};
use std::os::fd::IntoRawFd;

/// One socket, bound and listening, not yet handed to pingora.
pub struct Bound {
    socket: TcpListener,
    /// Where it listens: the configured address, with the port the OS chose for port 0.
    pub addr: SocketAddr,
}

/// Binds `addr` as pingora would (`SO_REUSEADDR`, no `SO_REUSEPORT`, so a port
/// another process listens on is refused). `setting` names the config key in the message.
pub fn bind(setting: &str, addr: SocketAddr) -> Result<Bound, String> {
    let refuse = |e: std::io::Error| {
        format!(
            "{setting}: cannot listen on {addr}: {}",
            super::tls::reason(&e)
        )
    };
    // std sets SO_REUSEADDR on Unix, as pingora does.
    let socket = TcpListener::bind(addr).map_err(refuse)?;
    // Tokio takes the socket as it is: it must not block.
    socket.set_nonblocking(true).map_err(refuse)?;
    let addr = socket.local_addr().map_err(refuse)?;
    Ok(Bound { socket, addr })
}

/// A pingora service that serves on sockets bound beforehand, and ends the
/// process if the service fails anyway: a gateway that cannot serve must not
/// stay up looking healthy.
pub struct OnBound<S> {
    name: String,
    threads: Option<usize>,
    inner: Option<S>,
    fds: ListenFds,
}

impl<S: Service + 'static> OnBound<S> {
    /// `inner` must listen on exactly the addresses of `sockets`, as text
    /// (`Bound::addr.to_string()`): pingora finds a socket by that text.
    pub fn new(inner: S, sockets: Vec<Bound>) -> OnBound<S> {
        let mut table = Fds::new();
        for bound in sockets {
            // Pingora's listener takes ownership of the descriptor.
            table.add(bound.addr.to_string(), bound.socket.into_raw_fd());
        }
        OnBound {
            name: inner.name().to_owned(),
            threads: inner.threads(),
            inner: Some(inner),
            fds: std::sync::Arc::new(table.into()),
        }
    }
}

#[async_trait]
impl<S: Service + 'static> Service for OnBound<S> {
    async fn start_service(
        &mut self,
        _fds: Option<ListenFds>,
        shutdown: ShutdownWatch,
        listeners_per_fd: usize,
    ) {
        let Some(mut inner) = self.inner.take() else {
            return;
        };
        let fds = self.fds.clone();
        // A task of its own, so that a panic in pingora's listener set-up is seen here.
        let serving = tokio::spawn(async move {
            inner
                .start_service(Some(fds), shutdown, listeners_per_fd)
                .await;
        });
        if let Err(e) = serving.await {
            let why = match e.try_into_panic() {
                Ok(panic) => panic_text(panic.as_ref()),
                Err(e) => e.to_string(),
            };
            eprintln!(
                "service {} failed: {}; exiting",
                self.name,
                why.replace('\n', " ")
            );
            crate::access_log::flush();
            std::process::exit(1);
        }
    }

    fn name(&self) -> &str {
        &self.name
    }

    fn threads(&self) -> Option<usize> {
        self.threads
    }
}

fn panic_text(panic: &(dyn std::any::Any + Send)) -> String {
    if let Some(s) = panic.downcast_ref::<&str>() {
        (*s).to_owned()
    } else if let Some(s) = panic.downcast_ref::<String>() {
        s.clone()
    } else {
        "panicked".to_owned()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_port_another_socket_listens_on_is_refused_naming_setting_and_address() {
        let taken = TcpListener::bind("127.0.0.1:0").unwrap();
        let addr = taken.local_addr().unwrap();
        let message = bind("admin_listen", addr).err().unwrap();
        assert_eq!(
            message,
            format!("admin_listen: cannot listen on {addr}: Address already in use")
        );
    }

    #[test]
    fn port_zero_is_bound_to_a_port_the_os_chose() {
        let bound = bind("listen", "127.0.0.1:0".parse().unwrap()).unwrap();
        assert_ne!(bound.addr.port(), 0);
        assert_eq!(bound.addr.ip().to_string(), "127.0.0.1");
    }
}
