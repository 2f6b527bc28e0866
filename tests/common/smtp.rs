//! A real SMTP server on loopback for tests (mailin-embedded), keeping every
//! message it accepts as raw bytes, with optional per-recipient replies.

use std::collections::HashMap;
use std::net::{SocketAddr, TcpListener};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use mailin_embedded::{Handler, Response, Server, response};

#[derive(Debug, Clone)]
pub struct ReceivedMail {
    /// The envelope sender (MAIL FROM): where bounces go.
    pub from: String,
    pub to: Vec<String>,
    pub raw: Vec<u8>,
}

impl ReceivedMail {
    pub fn parsed(&self) -> mail_parser::Message<'_> {
        mail_parser::MessageParser::default().parse(&self.raw).expect("a parseable message")
    }

    pub fn header(&self, name: &str) -> Option<String> {
        self.parsed().header_raw(name).map(|v| v.trim().to_owned())
    }

    pub fn text(&self) -> String {
        self.parsed().body_text(0).map(|t| t.into_owned()).unwrap_or_default()
    }

    pub fn html(&self) -> String {
        self.parsed().body_html(0).map(|t| t.into_owned()).unwrap_or_default()
    }

    /// The first link in the text part that starts with `prefix`.
    pub fn link_to(&self, prefix: &str) -> Option<String> {
        let text = self.text();
        let start = text.find(prefix)?;
        let link: String = text[start..].chars().take_while(|c| !c.is_whitespace()).collect();
        Some(link)
    }
}

/// Set replies by recipient address (lower case): the command each answers, its code and text.
type Replies = Arc<Mutex<HashMap<String, (At, u16, String)>>>;

/// The command a recipient's set reply answers.
#[derive(Clone, Copy, PartialEq, Eq)]
enum At {
    Rcpt,
    /// The end of the data: the recipient was accepted first.
    EndOfData,
}

#[derive(Clone)]
struct Sink {
    hellos: Arc<AtomicUsize>,
    hello_names: Arc<Mutex<Vec<String>>>,
    mails: Arc<Mutex<Vec<ReceivedMail>>>,
    replies: Replies,
    /// This connection's client said EHLO already (each connection has its own handler).
    greeted: bool,
    from: String,
    to: Vec<String>,
    buffer: Vec<u8>,
}

impl Handler for Sink {
    fn helo(&mut self, _ip: std::net::IpAddr, domain: &str) -> Response {
        // A client may say EHLO again on one connection (to read its extensions): still one connection.
        if !std::mem::replace(&mut self.greeted, true) {
            self.hellos.fetch_add(1, Ordering::Relaxed);
            self.hello_names.lock().unwrap().push(domain.to_owned());
        }
        response::OK
    }

    fn rcpt(&mut self, to: &str) -> Response {
        match self.replies.lock().unwrap().get(&to.to_lowercase()) {
            Some((At::Rcpt, code, text)) => Response::custom(*code, text.clone()),
            _ => response::OK,
        }
    }

    fn data_start(&mut self, _domain: &str, from: &str, _is8bit: bool, to: &[String]) -> Response {
        self.from = from.to_owned();
        self.to = to.to_vec();
        self.buffer.clear();
        response::OK
    }

    fn data(&mut self, buf: &[u8]) -> std::io::Result<()> {
        self.buffer.extend_from_slice(buf);
        Ok(())
    }

    fn data_end(&mut self) -> Response {
        let refusal = self.to.iter().find_map(|to| match self.replies.lock().unwrap().get(&to.to_lowercase()) {
            Some((At::EndOfData, code, text)) => {
                // mailin stays in DATA after an error reply to the end of data; the
                // transaction is over (RFC 5321 §4.1.1.4), so its state machine is told it went well.
                let mut refusal = Response::custom(*code, text.clone());
                refusal.is_error = false;
                Some(refusal)
            }
            _ => None,
        });
        if let Some(refusal) = refusal {
            self.to.clear();
            self.buffer.clear();
            return refusal;
        }
        let mail = ReceivedMail {
            from: std::mem::take(&mut self.from),
            to: std::mem::take(&mut self.to),
            raw: std::mem::take(&mut self.buffer),
        };
        self.mails.lock().unwrap().push(mail);
        response::OK
    }
}

/// A loopback port held by this test where nothing listens yet: a connect is
/// refused, as from a server that is down. Binding without listening keeps the
/// port ours; a port merely found free and released could be taken meanwhile,
/// even by the application's own connect attempts (a loopback connect to a
/// closed port in the ephemeral range can pick that very port as its source
/// and connect to itself), which once failed a test with "address in use".
pub struct ClosedPort {
    socket: socket2::Socket,
    pub addr: SocketAddr,
}

impl ClosedPort {
    pub fn reserve() -> Self {
        use socket2::{Domain, Socket, Type};
        let socket = Socket::new(Domain::IPV4, Type::STREAM, None).expect("a socket");
        let any: SocketAddr = "127.0.0.1:0".parse().expect("an address");
        socket.bind(&any.into()).expect("bind a loopback port");
        let addr = socket.local_addr().expect("bound").as_socket().expect("an inet address");
        Self { socket, addr }
    }

    /// Starts listening on the held port: the server is back.
    pub fn listen(self) -> TcpListener {
        self.socket.listen(128).expect("listen");
        self.socket.into()
    }
}

/// The server lives on its own threads until the test process ends. It
/// serves one connection per thread, so it has more threads than any test
/// opens connections.
#[derive(Clone)]
pub struct MailSink {
    pub addr: SocketAddr,
    hellos: Arc<AtomicUsize>,
    hello_names: Arc<Mutex<Vec<String>>>,
    mails: Arc<Mutex<Vec<ReceivedMail>>>,
    replies: Replies,
}

impl MailSink {
    pub fn start() -> Self {
        Self::serve(TcpListener::bind("127.0.0.1:0").expect("bind smtp"))
    }

    /// Starts on a port the application already tries to reach, kept for this moment.
    pub fn start_on(port: ClosedPort) -> Self {
        Self::serve(port.listen())
    }

    fn serve(listener: TcpListener) -> Self {
        let addr = listener.local_addr().expect("smtp addr");
        let hellos = Arc::new(AtomicUsize::new(0));
        let hello_names = Arc::new(Mutex::new(vec![]));
        let mails = Arc::new(Mutex::new(vec![]));
        let replies = Arc::new(Mutex::new(HashMap::new()));
        let handler = Sink {
            hellos: hellos.clone(),
            hello_names: hello_names.clone(),
            mails: mails.clone(),
            replies: replies.clone(),
            greeted: false,
            from: String::new(),
            to: vec![],
            buffer: vec![],
        };
        std::thread::spawn(move || {
            let mut server = Server::new(handler);
            server.with_name("sink.test").with_num_threads(64).with_tcp_listener(listener);
            let _ = server.serve();
        });
        Self { addr, hellos, hello_names, mails, replies }
    }

    /// The names clients gave in EHLO/HELO, in order.
    pub fn hello_names(&self) -> Vec<String> {
        self.hello_names.lock().unwrap().clone()
    }

    /// EHLO/HELO greetings so far: one per connection a client set up.
    pub fn connections(&self) -> usize {
        self.hellos.load(Ordering::Relaxed)
    }

    /// Answers RCPT TO for `address` with this reply from now on.
    pub fn reply_to_rcpt(&self, address: &str, code: u16, text: &str) {
        self.replies.lock().unwrap().insert(address.to_lowercase(), (At::Rcpt, code, text.to_owned()));
    }

    /// Accepts RCPT TO for `address`, then answers the end of its data with this reply from now on.
    pub fn reply_to_end_of_data(&self, address: &str, code: u16, text: &str) {
        self.replies.lock().unwrap().insert(address.to_lowercase(), (At::EndOfData, code, text.to_owned()));
    }

    /// Accepts `address` normally again.
    pub fn clear_reply(&self, address: &str) {
        self.replies.lock().unwrap().remove(&address.to_lowercase());
    }

    /// Every mail received so far for `to`.
    pub fn mails_to(&self, to: &str) -> Vec<ReceivedMail> {
        let to = to.to_lowercase();
        self.mails.lock().unwrap().iter().filter(|m| m.to.iter().any(|t| t.to_lowercase() == to)).cloned().collect()
    }

    pub fn count(&self) -> usize {
        self.mails.lock().unwrap().len()
    }

    /// Waits (up to 10 s) until at least `n` mails reached `to`.
    pub async fn wait_for(&self, to: &str, n: usize) -> Vec<ReceivedMail> {
        let deadline = Instant::now() + Duration::from_secs(10);
        loop {
            let mails = self.mails_to(to);
            if mails.len() >= n {
                return mails;
            }
            assert!(Instant::now() < deadline, "expected {n} mail(s) to {to}, got {}", mails.len());
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }

    /// Asserts that no mail beyond `n` reaches `to` within a short wait for the worker.
    pub async fn assert_stays_at(&self, to: &str, n: usize) {
        tokio::time::sleep(Duration::from_millis(1500)).await;
        assert_eq!(self.mails_to(to).len(), n, "mails to {to}");
    }
}
