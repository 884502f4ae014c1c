//! A small local HTTP server that stands in for a paid chat-completions API
//! (the only external service the tests replace). It answers scripted
//! responses in order, then a default one, and records every request body.

use std::collections::VecDeque;
use std::io::{BufRead, BufReader, Read, Write};
use std::net::{TcpListener, TcpStream};
use std::sync::{Arc, Mutex};
use std::time::Duration;

#[derive(Debug, Clone)]
pub struct Scripted {
    pub status: u16,
    pub body: String,
    pub delay: Duration,
    pub headers: Vec<(String, String)>,
}

impl Scripted {
    /// A `200` whose message is the given content.
    pub fn answer(content: &str) -> Self {
        let body = serde_json::json!({"choices": [{"message": {"role": "assistant", "content": content}}], "usage": {"total_tokens": 40}});
        Self {
            status: 200,
            body: body.to_string(),
            delay: Duration::ZERO,
            headers: vec![],
        }
    }

    pub fn status(status: u16) -> Self {
        Self {
            status,
            body: r#"{"error":{"message":"scripted"}}"#.into(),
            delay: Duration::ZERO,
            headers: vec![],
        }
    }

    pub fn raw(body: &str) -> Self {
        Self {
            status: 200,
            body: body.into(),
            delay: Duration::ZERO,
            headers: vec![],
        }
    }
}

#[derive(Default)]
struct State {
    script: VecDeque<Scripted>,
    default: Option<Scripted>,
    requests: Vec<(String, serde_json::Value)>,
    /// When each request arrived, in order.
    arrivals: Vec<std::time::Instant>,
}

#[derive(Clone)]
pub struct ChatServer {
    pub base_url: String,
    state: Arc<Mutex<State>>,
}

impl ChatServer {
    pub fn start(default: Scripted) -> Self {
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let base_url = format!("http://{}/v1", listener.local_addr().unwrap());
        let state = Arc::new(Mutex::new(State {
            default: Some(default),
            ..State::default()
        }));
        let shared = Arc::clone(&state);
        std::thread::spawn(move || {
            for stream in listener.incoming().flatten() {
                let state = Arc::clone(&shared);
                std::thread::spawn(move || serve(stream, state));
            }
        });
        Self { base_url, state }
    }

    /// Answers `response` to the next request not yet scripted.
    pub fn then(&self, response: Scripted) -> &Self {
        self.state.lock().unwrap().script.push_back(response);
        self
    }

    pub fn set_default(&self, response: Scripted) {
        self.state.lock().unwrap().default = Some(response);
    }

    /// When each request so far arrived.
    pub fn arrivals(&self) -> Vec<std::time::Instant> {
        self.state.lock().unwrap().arrivals.clone()
    }

    /// `(authorization header, body)` of every request so far.
    pub fn requests(&self) -> Vec<(String, serde_json::Value)> {
        self.state.lock().unwrap().requests.clone()
    }
}

fn serve(stream: TcpStream, state: Arc<Mutex<State>>) {
    let mut reader = BufReader::new(stream.try_clone().unwrap());
    let mut length = 0;
    let mut authorization = String::new();
    loop {
        let mut line = String::new();
        if reader.read_line(&mut line).unwrap_or(0) == 0 {
            return;
        }
        let line = line.trim_end();
        if line.is_empty() {
            break;
        }
        if let Some((name, value)) = line.split_once(':') {
            match name.to_ascii_lowercase().as_str() {
                "content-length" => length = value.trim().parse().unwrap_or(0),
                "authorization" => authorization = value.trim().to_string(),
                _ => {}
            }
        }
    }
    let mut body = vec![0; length];
    if reader.read_exact(&mut body).is_err() {
        return;
    }
    let response = {
        let mut state = state.lock().unwrap();
        state.arrivals.push(std::time::Instant::now());
        state.requests.push((
            authorization,
            serde_json::from_slice(&body).unwrap_or_default(),
        ));
        state
            .script
            .pop_front()
            .or_else(|| state.default.clone())
            .unwrap()
    };
    std::thread::sleep(response.delay);
    let extra: String = response
        .headers
        .iter()
        .map(|(k, v)| format!("{k}: {v}\r\n"))
        .collect();
    let head = format!(
        "HTTP/1.1 {} Scripted\r\nContent-Type: application/json\r\nContent-Length: {}\r\nConnection: close\r\n{extra}\r\n",
        response.status,
        response.body.len()
    );
    let mut stream = stream;
    let _ = stream.write_all(head.as_bytes());
    let _ = stream.write_all(response.body.as_bytes());
}
