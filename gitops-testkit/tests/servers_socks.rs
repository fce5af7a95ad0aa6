//! `Socks5Proxy`: a raw RFC 1928 client connects through it to a TCP echo server, with and
//! without RFC 1929 credentials; refusals are recorded.

use std::io::{Read as _, Write as _};
use std::net::{TcpListener, TcpStream};

use gitops_testkit::servers::{ServerError, Socks5Proxy};

/// An echo server on 127.0.0.1 (one line per connection).
fn echo_server() -> std::net::SocketAddr {
    let listener = TcpListener::bind("127.0.0.1:0").expect("bind");
    let addr = listener.local_addr().expect("addr");
    std::thread::spawn(move || {
        for mut conn in listener.incoming().flatten() {
            let mut buf = [0u8; 64];
            if let Ok(n) = conn.read(&mut buf) {
                let _ = conn.write_all(&buf[..n]);
            }
        }
    });
    addr
}

/// Greets with `methods`, authenticates with `credentials` if the proxy picks method 2, then
/// asks to CONNECT to `target`. Returns the proxy's reply code (0 = granted), or `None` when
/// the greeting or authentication was refused.
fn connect(
    proxy: std::net::SocketAddr,
    methods: &[u8],
    credentials: Option<(&str, &str)>,
    target: std::net::SocketAddr,
) -> (Option<u8>, TcpStream) {
    let mut s = TcpStream::connect(proxy).expect("connect to the proxy");
    let mut greeting = vec![5, methods.len() as u8];
    greeting.extend_from_slice(methods);
    s.write_all(&greeting).expect("greet");
    let mut choice = [0u8; 2];
    s.read_exact(&mut choice).expect("method choice");
    if choice[1] == 0xff {
        return (None, s);
    }
    if choice[1] == 2 {
        let (user, password) = credentials.expect("the proxy asked for credentials");
        let mut auth = vec![1, user.len() as u8];
        auth.extend_from_slice(user.as_bytes());
        auth.push(password.len() as u8);
        auth.extend_from_slice(password.as_bytes());
        s.write_all(&auth).expect("authenticate");
        let mut status = [0u8; 2];
        s.read_exact(&mut status).expect("auth status");
        if status[1] != 0 {
            return (None, s);
        }
    }
    let std::net::SocketAddr::V4(v4) = target else {
        panic!("IPv4 target")
    };
    let mut request = vec![5, 1, 0, 1];
    request.extend_from_slice(&v4.ip().octets());
    request.extend_from_slice(&v4.port().to_be_bytes());
    s.write_all(&request).expect("request");
    let mut reply = [0u8; 10];
    s.read_exact(&mut reply).expect("reply");
    (Some(reply[1]), s)
}

#[test]
fn connects_clients_and_records_targets() -> Result<(), ServerError> {
    let echo = echo_server();
    let proxy = Socks5Proxy::start()?;
    assert_eq!(proxy.url(), format!("socks5://{}", proxy.addr()));
    let (code, mut stream) = connect(proxy.addr(), &[0], None, echo);
    assert_eq!(code, Some(0));
    stream.write_all(b"ping\n").expect("write");
    let mut buf = [0u8; 5];
    stream.read_exact(&mut buf).expect("echo");
    assert_eq!(&buf, b"ping\n");
    let seen = proxy.connections();
    assert_eq!(seen.len(), 1);
    assert_eq!(seen[0].target, echo.to_string());
    assert!(seen[0].granted && seen[0].user.is_none());

    // A closed port: reply 5 (connection refused), recorded as not granted.
    let closed = {
        let l = TcpListener::bind("127.0.0.1:0").expect("bind");
        l.local_addr().expect("addr")
    };
    let (code, _) = connect(proxy.addr(), &[0], None, closed);
    assert_eq!(code, Some(5));
    assert!(!proxy.connections()[1].granted);
    Ok(())
}

#[test]
fn credentials_are_required_and_checked() -> Result<(), ServerError> {
    let echo = echo_server();
    let proxy = Socks5Proxy::builder().credentials("u", "p").start()?;
    // No username/password method offered: refused at the greeting.
    assert_eq!(connect(proxy.addr(), &[0], None, echo).0, None);
    // Wrong password: refused, recorded with the user name.
    assert_eq!(
        connect(proxy.addr(), &[0, 2], Some(("u", "x")), echo).0,
        None
    );
    assert_eq!(
        connect(proxy.addr(), &[0, 2], Some(("u", "p")), echo).0,
        Some(0)
    );
    let seen = proxy.connections();
    assert_eq!(seen.len(), 2, "{seen:?}");
    assert!(!seen[0].granted && seen[0].user.as_deref() == Some("u"));
    assert!(seen[1].granted && seen[1].target == echo.to_string());
    // Debug never shows the password.
    assert!(!format!("{:?}", Socks5Proxy::builder().credentials("u", "s3cret")).contains("s3cret"));
    Ok(())
}

#[test]
fn after_drop_the_port_refuses_connections() -> Result<(), ServerError> {
    let proxy = Socks5Proxy::start()?;
    let addr = proxy.addr();
    drop(proxy);
    assert!(TcpStream::connect(addr).is_err());
    Ok(())
}
