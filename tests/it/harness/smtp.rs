//! A minimal blocking SMTP client, just enough to inject test messages.

use std::io::{BufRead, BufReader, Write};
use std::net::{SocketAddr, TcpStream};
use std::time::Duration;

/// One SMTP reply: code and the text of all its lines.
#[derive(Debug)]
pub(crate) struct Reply {
    pub code: u16,
    pub text: String,
}

pub(crate) struct SmtpConn {
    reader: BufReader<TcpStream>,
    writer: TcpStream,
}

impl SmtpConn {
    pub fn connect(port: u16) -> Result<(SmtpConn, Reply), String> {
        let addr = SocketAddr::from(([127, 0, 0, 1], port));
        let stream = TcpStream::connect_timeout(&addr, Duration::from_secs(5))
            .map_err(|e| format!("connect to {addr}: {e}"))?;
        stream.set_read_timeout(Some(Duration::from_secs(15))).ok();
        stream.set_write_timeout(Some(Duration::from_secs(15))).ok();
        let writer = stream.try_clone().map_err(|e| e.to_string())?;
        let mut conn = SmtpConn {
            reader: BufReader::new(stream),
            writer,
        };
        let greeting = conn.expect(220, "greeting")?;
        Ok((conn, greeting))
    }

    pub fn read_reply(&mut self) -> Result<Reply, String> {
        let mut text = String::new();
        loop {
            let mut line = String::new();
            let n = self
                .reader
                .read_line(&mut line)
                .map_err(|e| format!("reading SMTP reply: {e}"))?;
            if n == 0 {
                return Err(format!("connection closed by server (after {text:?})"));
            }
            let line = line.trim_end_matches(['\r', '\n']);
            if line.len() < 3 {
                return Err(format!("malformed SMTP reply line {line:?}"));
            }
            let code: u16 = line[..3]
                .parse()
                .map_err(|_| format!("malformed SMTP reply line {line:?}"))?;
            text.push_str(line.get(4..).unwrap_or(""));
            if line.as_bytes().get(3) == Some(&b'-') {
                text.push('\n');
                continue;
            }
            return Ok(Reply { code, text });
        }
    }

    pub fn command(&mut self, cmd: &str) -> Result<Reply, String> {
        self.writer
            .write_all(format!("{cmd}\r\n").as_bytes())
            .map_err(|e| format!("sending {cmd:?}: {e}"))?;
        self.read_reply()
    }

    fn expect(&mut self, code: u16, what: &str) -> Result<Reply, String> {
        let reply = self.read_reply()?;
        if reply.code == code {
            Ok(reply)
        } else {
            Err(format!(
                "{what}: expected {code}, got {} {}",
                reply.code, reply.text
            ))
        }
    }

    fn command_expect(&mut self, cmd: &str, code: u16) -> Result<Reply, String> {
        let reply = self.command(cmd)?;
        if reply.code == code {
            Ok(reply)
        } else {
            Err(format!(
                "{cmd}: expected {code}, got {} {}",
                reply.code, reply.text
            ))
        }
    }
}

/// Sends one message; returns the final reply text (contains the queue id).
pub(crate) fn send(port: u16, from: &str, to: &[&str], raw: &[u8]) -> Result<String, String> {
    if to.is_empty() {
        return Err("no recipients".into());
    }
    let utf8 = !from.is_ascii() || to.iter().any(|t| !t.is_ascii());
    let (mut conn, _) = SmtpConn::connect(port)?;
    conn.command_expect("EHLO harness.canvass.test", 250)?;
    let params = if utf8 { " SMTPUTF8" } else { "" };
    conn.command_expect(&format!("MAIL FROM:<{from}>{params}"), 250)?;
    for rcpt in to {
        conn.command_expect(&format!("RCPT TO:<{rcpt}>"), 250)?;
    }
    conn.command_expect("DATA", 354)?;
    conn.writer
        .write_all(&dot_stuff(raw))
        .map_err(|e| format!("sending message data: {e}"))?;
    let reply = conn.expect(250, "end of DATA")?;
    let _ = conn.command("QUIT");
    Ok(reply.text)
}

/// CRLF line endings, leading dots doubled, terminated by `.` on its own line.
fn dot_stuff(raw: &[u8]) -> Vec<u8> {
    let mut out = Vec::with_capacity(raw.len() + 64);
    let body = raw.strip_suffix(b"\n").unwrap_or(raw);
    let body = body.strip_suffix(b"\r").unwrap_or(body);
    if !raw.is_empty() {
        for line in body.split(|&b| b == b'\n') {
            let line = line.strip_suffix(b"\r").unwrap_or(line);
            if line.first() == Some(&b'.') {
                out.push(b'.');
            }
            out.extend_from_slice(line);
            out.extend_from_slice(b"\r\n");
        }
    }
    out.extend_from_slice(b".\r\n");
    out
}
