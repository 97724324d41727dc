use crate::log_limit::LogLimiter;
use crate::platform::CancellationToken;
use crate::transport::tcp::TcpConnection;
use crate::transport::transport_layer::TransportLayerInnerRef;
use crate::transport::SipAddr;
use crate::transport::SipConnection;
use crate::Result;
use core::time::Duration;
use socket2::{Domain, Protocol, Socket, Type};
use std::fmt;
use std::{net::SocketAddr, sync::Arc};
use tokio::net::{TcpListener, TcpStream};
use tracing::{debug, warn};
pub struct TcpListenerConnectionInner {
    pub local_addr: SipAddr,
    pub external: Option<SipAddr>,
}

#[derive(Clone)]
pub struct TcpListenerConnection {
    pub inner: Arc<TcpListenerConnectionInner>,
}

impl TcpListenerConnection {
    pub async fn new(local_addr: SocketAddr, external: Option<SocketAddr>) -> Result<Self> {
        let inner = TcpListenerConnectionInner {
            local_addr: SipAddr {
                r#type: Some(crate::sip::transport::Transport::Tcp),
                addr: local_addr.into(),
            },
            external: external.map(|addr| SipAddr {
                r#type: Some(crate::sip::transport::Transport::Tcp),
                addr: addr.into(),
            }),
        };
        Ok(TcpListenerConnection {
            inner: Arc::new(inner),
        })
    }

    pub async fn serve_listener(
        &self,
        transport_layer_inner: TransportLayerInnerRef,
    ) -> Result<()> {
        let local = self.inner.local_addr.get_socketaddr()?;
        let domain = if local.is_ipv6() {
            Domain::IPV6
        } else {
            Domain::IPV4
        };
        let socket = Socket::new(domain, Type::STREAM, Some(Protocol::TCP))?;
        if let Err(e) = socket.set_reuse_address(true) {
            warn!(error = %e, "failed to set SO_REUSEADDR on TCP listener");
        }
        socket.set_nonblocking(true)?;
        socket.bind(&local.into())?;
        socket.listen(128)?;
        let listener = TcpListener::from_std(socket.into())?;
        let listener_local_addr = self.get_addr().clone();
        crate::platform::spawn(async move {
            let limits = AcceptLogLimits::default();
            loop {
                let (stream, remote_addr) =
                    match accept_or_cancelled(&listener, &transport_layer_inner.cancel_token).await
                    {
                        Some(Ok((stream, remote_addr))) => (stream, remote_addr),
                        Some(Err(e)) => {
                            after_accept_error(&e, &limits).await;
                            continue;
                        }
                        None => {
                            debug!(local = %listener_local_addr, "TCP listener cancelled");
                            break;
                        }
                    };
                if !transport_layer_inner.is_whitelisted(remote_addr.ip()).await {
                    debug!(remote = %remote_addr, "tcp connection rejected by whitelist");
                    continue;
                }
                if !admit_stream(&transport_layer_inner, remote_addr, &limits) {
                    continue; // dropping the stream closes it
                }
                let local_addr = listener_local_addr.clone();
                let tcp_connection = match TcpConnection::from_stream(
                    stream,
                    local_addr.clone(),
                    Some(transport_layer_inner.cancel_token.child_token()),
                ) {
                    Ok(tcp_connection) => tcp_connection,
                    Err(e) => {
                        warn!(error = ?e, %local_addr, "Failed to create TCP connection");
                        continue;
                    }
                };
                let sip_connection = SipConnection::Tcp(tcp_connection.clone());
                transport_layer_inner.add_connection(sip_connection.clone());
                debug!(?local_addr, "new tcp connection");
            }
        });
        Ok(())
    }
}

/// How long an accept loop pauses after an error that is not about one connection (no file
/// descriptor or memory left): without the pause it would spin, failing again at once.
const ACCEPT_ERROR_PAUSE: Duration = Duration::from_millis(100);

/// The rate limits of an accept loop's warnings: one line per interval for each kind.
pub(crate) struct AcceptLogLimits {
    errors: LogLimiter,
    refused: LogLimiter,
    /// Failed or timed-out TLS handshakes.
    #[cfg_attr(
        not(all(feature = "platform-tokio", feature = "rustls")),
        allow(dead_code)
    )]
    pub(crate) handshakes: LogLimiter,
}

impl Default for AcceptLogLimits {
    fn default() -> Self {
        Self {
            errors: LogLimiter::new(Duration::from_secs(10)),
            refused: LogLimiter::new(Duration::from_secs(10)),
            handshakes: LogLimiter::new(Duration::from_secs(10)),
        }
    }
}

/// After a failed accept: a warning at most once per interval (while the file descriptors are
/// exhausted every accept fails at once, and a warning each time would fill the disk), and a
/// short pause unless the error concerned that one connection only.
pub(crate) async fn after_accept_error(error: &std::io::Error, limits: &AcceptLogLimits) {
    if let Some(held_back) = limits.errors.allow() {
        warn!(error = %error, held_back, "Failed to accept connection");
    }
    if !matches!(
        error.kind(),
        std::io::ErrorKind::ConnectionAborted
            | std::io::ErrorKind::ConnectionReset
            | std::io::ErrorKind::ConnectionRefused
            | std::io::ErrorKind::Interrupted
    ) {
        crate::platform::sleep(ACCEPT_ERROR_PAUSE).await;
    }
}

/// Whether an accepted connection from `remote` stays open under the stream connection
/// limits ([`TransportLayer::set_stream_connection_limits`](crate::transport::TransportLayer::set_stream_connection_limits));
/// a refusal is logged at most once per interval.
pub(crate) fn admit_stream(
    transport_layer_inner: &TransportLayerInnerRef,
    remote: SocketAddr,
    limits: &AcceptLogLimits,
) -> bool {
    match transport_layer_inner.stream_limit_reached(remote.ip()) {
        None => true,
        Some(limit) => {
            if let Some(held_back) = limits.refused.allow() {
                warn!(%remote, limit, held_back, "refusing a connection: too many open");
            }
            false
        }
    }
}

/// Accepts the next connection, or returns `None` once `cancel_token` fires.
///
/// Listener accept loops run in detached tasks; racing the token lets them exit
/// and release the listening socket (and the transport layer they hold) when the
/// transport layer is cancelled.
pub(crate) async fn accept_or_cancelled(
    listener: &TcpListener,
    cancel_token: &CancellationToken,
) -> Option<std::io::Result<(TcpStream, SocketAddr)>> {
    let mut cancel_f = core::pin::pin!(cancel_token.cancelled());
    let mut accept_f = core::pin::pin!(listener.accept());
    match crate::platform::select::select2(&mut cancel_f, &mut accept_f).await {
        crate::platform::select::Either::A(()) => None,
        crate::platform::select::Either::B(accepted) => Some(accepted),
    }
}

impl TcpListenerConnection {
    pub fn get_addr(&self) -> &SipAddr {
        if let Some(external) = &self.inner.external {
            external
        } else {
            &self.inner.local_addr
        }
    }

    pub async fn close(&self) -> Result<()> {
        Ok(())
    }
}

impl fmt::Display for TcpListenerConnection {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "TCP Listener {}", self.get_addr())
    }
}

impl fmt::Debug for TcpListenerConnection {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Display::fmt(self, f)
    }
}
