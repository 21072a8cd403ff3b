//! One HTTP/1.1 request read from a keep-alive connection, for the bench's own servers (the Bot API
//! stand-in, the webhook callback receiver): the path and the body (`Content-Length` only — what the
//! gateway's clients send). Minimal on purpose: on a 2-core machine the bench's CPU is the gateway's too.

use std::io::{BufRead, BufReader, Read};
use std::net::TcpStream;

/// The next request's path and body; `None` when the connection closed (or broke) first.
pub fn read(reader: &mut BufReader<TcpStream>) -> Option<(String, Vec<u8>)> {
    let mut request_line = String::new();
    if reader.read_line(&mut request_line).unwrap_or(0) == 0 {
        return None;
    }
    let path = request_line.split_whitespace().nth(1).unwrap_or("").to_owned();
    let mut length = 0usize;
    loop {
        let mut line = String::new();
        if reader.read_line(&mut line).unwrap_or(0) == 0 {
            return None;
        }
        let line = line.trim_end();
        if line.is_empty() {
            break;
        }
        if let Some((name, value)) = line.split_once(':')
            && name.eq_ignore_ascii_case("content-length")
        {
            length = value.trim().parse().unwrap_or(0);
        }
    }
    let mut body = vec![0u8; length];
    reader.read_exact(&mut body).ok()?;
    Some((path, body))
}
