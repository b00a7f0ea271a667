//! A real HTTP server on 127.0.0.1 for the network tests: it counts the connections it gets,
//! records each request's head, and answers each request in one fixed way.

use std::io::{BufRead, BufReader, Write};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

pub struct Target {
    pub port: u16,
    connections: Arc<AtomicUsize>,
    heads: Arc<Mutex<Vec<String>>>,
}

pub enum Answer {
    /// 200 with this body (and an ETag, as S3 would send).
    Body(&'static str),
    RedirectTo(String),
    /// Accepts and then never answers.
    Silence,
    /// A body of this many bytes.
    Huge(usize),
}

impl Target {
    pub fn start(answer: Answer) -> Target {
        let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let port = listener.local_addr().unwrap().port();
        let connections = Arc::new(AtomicUsize::new(0));
        let heads: Arc<Mutex<Vec<String>>> = Arc::default();
        let (counter, recorded) = (connections.clone(), heads.clone());
        std::thread::spawn(move || {
            for stream in listener.incoming() {
                let Ok(stream) = stream else { return };
                counter.fetch_add(1, Ordering::SeqCst);
                let mut reader = BufReader::new(stream);
                let head = read_request(&mut reader);
                recorded.lock().unwrap().push(head);
                let _ = answer.write_to(reader.get_mut());
            }
        });
        Target {
            port,
            connections,
            heads,
        }
    }

    /// `http://127.0.0.1:PORT`.
    pub fn endpoint(&self) -> String {
        format!("http://127.0.0.1:{}", self.port)
    }

    /// A URL on this server.
    pub fn url(&self) -> String {
        format!("{}/state", self.endpoint())
    }

    pub fn connections(&self) -> usize {
        self.connections.load(Ordering::SeqCst)
    }

    /// The request line and headers of every request so far, in order.
    pub fn heads(&self) -> Vec<String> {
        self.heads.lock().unwrap().clone()
    }
}

/// Reads one request: returns its head, and reads (and drops) a body of `content-length`.
fn read_request(reader: &mut impl BufRead) -> String {
    let mut head = String::new();
    while reader.read_line(&mut head).is_ok_and(|n| n > 2) {}
    let length = head
        .lines()
        .find_map(|line| {
            line.to_ascii_lowercase()
                .strip_prefix("content-length: ")?
                .parse()
                .ok()
        })
        .unwrap_or(0usize);
    let _ = reader.read_exact(&mut vec![0; length]);
    head
}

impl Answer {
    fn write_to(&self, stream: &mut impl Write) -> std::io::Result<()> {
        let head = |status: &str, extra: &str, length: usize| {
            format!("HTTP/1.1 {status}\r\n{extra}content-length: {length}\r\n\r\n")
        };
        match self {
            Answer::Body(body) => {
                stream.write_all((head("200 OK", "etag: \"v1\"\r\n", body.len()) + body).as_bytes())
            }
            Answer::RedirectTo(url) => {
                stream.write_all(head("302 Found", &format!("location: {url}\r\n"), 0).as_bytes())
            }
            Answer::Silence => {
                std::thread::sleep(Duration::from_secs(3600));
                Ok(())
            }
            Answer::Huge(size) => {
                let chunk = vec![b'x'; 1 << 20];
                stream.write_all(head("200 OK", "", *size).as_bytes())?;
                (0..size / chunk.len()).try_for_each(|_| stream.write_all(&chunk))
            }
        }
    }
}
