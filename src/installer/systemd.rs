//! Unit states read from systemd's private socket: what `systemctl
//! is-enabled` and `systemctl is-active` answer, without starting systemctl.
//! Each systemctl costs a host about 10 ms, and a plan that changes nothing
//! is mostly these two questions.
//!
//! A minimal D-Bus client written here: two method calls on a peer-to-peer
//! socket need no bus, no signals and no async runtime, which is what the
//! D-Bus crates (zbus) bring, and would grow the installer every host
//! receives. Anything unexpected is an error, and the caller asks systemctl.

use std::io::{self, Read, Write};
use std::os::unix::net::UnixStream;
use std::time::Duration;

/// Where systemd (PID 1) listens for root's direct connections.
pub const PRIVATE_SOCKET: &str = "/run/systemd/private";
/// How long systemd has to answer a call.
const TIMEOUT: Duration = Duration::from_secs(10);
/// A reply as large as this is not one of ours.
const MAX_MESSAGE: usize = 1 << 20;

/// A connection to systemd.
pub struct Systemd {
    stream: UnixStream,
    serial: u32,
}

/// The answer to a call: a return value, or the name of a D-Bus error.
#[derive(Debug, PartialEq, Eq)]
enum Reply {
    Return { signature: String, body: Vec<u8> },
    Error(String),
}

impl Systemd {
    /// Connects and authenticates as this process's user (root only:
    /// systemd refuses the others).
    pub fn connect() -> io::Result<Systemd> {
        let mut stream = UnixStream::connect(PRIVATE_SOCKET)?;
        stream.set_read_timeout(Some(TIMEOUT))?;
        stream.set_write_timeout(Some(TIMEOUT))?;
        // /proc/self belongs to this process's effective user, the one
        // systemd sees on the socket.
        let uid = std::os::unix::fs::MetadataExt::uid(&std::fs::metadata("/proc/self")?);
        let uid = hex(uid.to_string().as_bytes());
        // BEGIN goes with AUTH, as systemctl's own library sends it: sent
        // after the OK, it can reach systemd in the same read as the first
        // call, which systemd then leaves unanswered until more comes.
        stream.write_all(format!("\0AUTH EXTERNAL {uid}\r\nBEGIN\r\n").as_bytes())?;
        let line = read_line(&mut stream)?;
        if !line.starts_with("OK ") {
            return Err(invalid(format!("systemd refused us: {line}")));
        }
        Ok(Systemd { stream, serial: 0 })
    }

    /// What `systemctl is-enabled UNIT` prints (`enabled`, `static`,
    /// `disabled`…); `None` when systemd answers with an error (most often:
    /// no such unit file), where `systemctl is-enabled` fails too.
    pub fn unit_file_state(&mut self, unit: &str) -> io::Result<Option<String>> {
        let reply = self.call(
            "/org/freedesktop/systemd1",
            "org.freedesktop.systemd1.Manager",
            "GetUnitFileState",
            &[unit],
        )?;
        match reply {
            Reply::Return { signature, body } if signature == "s" => {
                Ok(Some(read_string(&body, 0)?.0))
            }
            Reply::Return { signature, .. } => Err(invalid(format!(
                "GetUnitFileState answered a value of type {signature:?}"
            ))),
            Reply::Error(_) => Ok(None),
        }
    }

    /// The unit's `ActiveState` (`active`, `inactive`, `failed`…), as
    /// `systemctl is-active UNIT` reads it.
    pub fn active_state(&mut self, unit: &str) -> io::Result<String> {
        let (body, at) = self.unit_property(unit, "ActiveState", "s")?;
        Ok(read_string(&body, at)?.0)
    }

    /// Whether systemd runs the unit from its file as the file is now, so
    /// that starting it needs no daemon-reload: `LoadState` is `loaded` and
    /// `NeedDaemonReload` false. Asking loads a unit systemd has not loaded
    /// yet from its file; a file written since the last reload is found by
    /// systemd 246 and later, and older ones answer `not-found`.
    pub fn loaded_current(&mut self, unit: &str) -> io::Result<bool> {
        let (body, at) = self.unit_property(unit, "LoadState", "s")?;
        if read_string(&body, at)?.0 != "loaded" {
            return Ok(false);
        }
        let (body, at) = self.unit_property(unit, "NeedDaemonReload", "b")?;
        Ok(!read_bool(&body, at)?)
    }

    /// A property of the unit's object, whose value must be of type `want`:
    /// the reply's body and where the value starts in it.
    fn unit_property(
        &mut self,
        unit: &str,
        property: &str,
        want: &str,
    ) -> io::Result<(Vec<u8>, usize)> {
        let path = format!("/org/freedesktop/systemd1/unit/{}", bus_label(unit));
        let reply = self.call(
            &path,
            "org.freedesktop.DBus.Properties",
            "Get",
            &["org.freedesktop.systemd1.Unit", property],
        )?;
        match reply {
            Reply::Return { signature, body } if signature == "v" => {
                let (inner, at) = read_signature(&body, 0)?;
                if inner != want {
                    return Err(invalid(format!("{property} is of type {inner:?}")));
                }
                Ok((body, at))
            }
            Reply::Return { signature, .. } => Err(invalid(format!(
                "Properties.Get answered a value of type {signature:?}"
            ))),
            Reply::Error(name) => Err(invalid(format!("{property} of {unit}: {name}"))),
        }
    }

    /// One method call whose arguments are all strings; waits for its reply.
    fn call(
        &mut self,
        path: &str,
        interface: &str,
        member: &str,
        args: &[&str],
    ) -> io::Result<Reply> {
        self.serial += 1;
        let message = method_call(self.serial, path, interface, member, args);
        self.stream.write_all(&message)?;
        // systemd sends every signal to every private connection (hundreds
        // after a daemon-reload): whatever is not our reply is skipped, for
        // as long as the socket's timeout allows.
        let deadline = std::time::Instant::now() + TIMEOUT;
        while std::time::Instant::now() < deadline {
            let (header, body) = read_message(&mut self.stream)?;
            if let Some((serial, reply)) = parse_reply(&header, body)? {
                if serial == self.serial {
                    return Ok(reply);
                }
            }
        }
        Err(invalid(format!("no answer from systemd to {member}")))
    }
}

fn invalid(detail: String) -> io::Error {
    io::Error::new(io::ErrorKind::InvalidData, detail)
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

/// A line of the authentication exchange, without its CR LF.
fn read_line(stream: &mut UnixStream) -> io::Result<String> {
    let mut line = Vec::new();
    let mut byte = [0u8; 1];
    while !line.ends_with(b"\r\n") {
        if stream.read(&mut byte)? == 0 || line.len() > 1024 {
            return Err(invalid("systemd closed the connection".into()));
        }
        line.push(byte[0]);
    }
    line.truncate(line.len() - 2);
    Ok(String::from_utf8_lossy(&line).into_owned())
}

/// systemd's object path label for a unit name: ASCII letters and digits
/// as they are, every other byte as `_` and two hex digits.
fn bus_label(name: &str) -> String {
    if name.is_empty() {
        return "_".into();
    }
    name.bytes()
        .map(|b| {
            if b.is_ascii_alphanumeric() {
                (b as char).to_string()
            } else {
                format!("_{b:02x}")
            }
        })
        .collect()
}

fn pad(buf: &mut Vec<u8>, align: usize) {
    while !buf.len().is_multiple_of(align) {
        buf.push(0);
    }
}

fn put_string(buf: &mut Vec<u8>, s: &str) {
    pad(buf, 4);
    buf.extend((s.len() as u32).to_le_bytes());
    buf.extend(s.as_bytes());
    buf.push(0);
}

fn put_signature(buf: &mut Vec<u8>, s: &str) {
    buf.push(s.len() as u8);
    buf.extend(s.as_bytes());
    buf.push(0);
}

/// A little-endian METHOD_CALL message.
fn method_call(serial: u32, path: &str, interface: &str, member: &str, args: &[&str]) -> Vec<u8> {
    let mut body = Vec::new();
    for arg in args {
        put_string(&mut body, arg);
    }
    let signature = "s".repeat(args.len());
    // Header fields: (code, signature of the value, value).
    let mut fields = Vec::new();
    for (code, kind, value) in [
        (1u8, "o", path),
        (2, "s", interface),
        (3, "s", member),
        (6, "s", "org.freedesktop.systemd1"),
        (8, "g", signature.as_str()),
    ] {
        pad(&mut fields, 8);
        fields.push(code);
        put_signature(&mut fields, kind);
        if kind == "g" {
            put_signature(&mut fields, value);
        } else {
            put_string(&mut fields, value);
        }
    }
    let mut message = vec![b'l', 1, 0, 1];
    message.extend((body.len() as u32).to_le_bytes());
    message.extend(serial.to_le_bytes());
    message.extend((fields.len() as u32).to_le_bytes());
    // The fields start at offset 16, a multiple of 8, so their alignment
    // computed from 0 above holds in the message.
    message.extend(fields);
    pad(&mut message, 8);
    message.extend(body);
    message
}

/// Reads one whole message: its fixed header and fields, and its body.
fn read_message(stream: &mut UnixStream) -> io::Result<(Vec<u8>, Vec<u8>)> {
    let mut fixed = [0u8; 16];
    stream.read_exact(&mut fixed)?;
    if fixed[0] != b'l' {
        return Err(invalid("systemd answered in big-endian".into()));
    }
    let body_len = u32::from_le_bytes(fixed[4..8].try_into().unwrap()) as usize;
    let fields_len = u32::from_le_bytes(fixed[12..16].try_into().unwrap()) as usize;
    let padded = fields_len.div_ceil(8) * 8;
    if padded + body_len > MAX_MESSAGE {
        return Err(invalid("systemd's reply is too large".into()));
    }
    let mut rest = vec![0u8; padded + body_len];
    stream.read_exact(&mut rest)?;
    let mut header = fixed.to_vec();
    header.extend(&rest[..fields_len]);
    Ok((header, rest[padded..].to_vec()))
}

/// A METHOD_RETURN or ERROR message's reply serial and content; `None` for
/// the other kinds.
fn parse_reply(header: &[u8], body: Vec<u8>) -> io::Result<Option<(u32, Reply)>> {
    let kind = header[1];
    if kind != 2 && kind != 3 {
        return Ok(None);
    }
    let mut reply_serial = None;
    let mut signature = String::new();
    let mut error = String::new();
    let mut at = 16;
    while at < header.len() {
        at = at.div_ceil(8) * 8;
        if at >= header.len() {
            break;
        }
        let code = header[at];
        let (kind, next) = read_signature(header, at + 1)?;
        at = next;
        match kind.as_str() {
            "u" => {
                at = at.div_ceil(4) * 4;
                let value = header
                    .get(at..at + 4)
                    .ok_or_else(|| invalid("a header field runs past its end".into()))?;
                if code == 5 {
                    reply_serial = Some(u32::from_le_bytes(value.try_into().unwrap()));
                }
                at += 4;
            }
            "s" | "o" => {
                let (value, next) = read_string(header, at)?;
                if code == 4 {
                    error = value;
                }
                at = next;
            }
            "g" => {
                let (value, next) = read_signature(header, at)?;
                if code == 8 {
                    signature = value;
                }
                at = next;
            }
            other => return Err(invalid(format!("a header field of type {other:?}"))),
        }
    }
    let serial = reply_serial.ok_or_else(|| invalid("a reply without its serial".into()))?;
    Ok(Some(if kind == 3 {
        (serial, Reply::Error(error))
    } else {
        (serial, Reply::Return { signature, body })
    }))
}

/// A string (or object path) at `at`, aligned to 4; the offset after it.
fn read_string(buf: &[u8], at: usize) -> io::Result<(String, usize)> {
    let at = at.div_ceil(4) * 4;
    let len = buf
        .get(at..at + 4)
        .map(|b| u32::from_le_bytes(b.try_into().unwrap()) as usize)
        .ok_or_else(|| invalid("a string runs past the message".into()))?;
    let bytes = buf
        .get(at + 4..at + 4 + len)
        .ok_or_else(|| invalid("a string runs past the message".into()))?;
    Ok((
        String::from_utf8_lossy(bytes).into_owned(),
        at + 4 + len + 1,
    ))
}

/// A boolean at `at`, aligned to 4 (a 32-bit 0 or 1).
fn read_bool(buf: &[u8], at: usize) -> io::Result<bool> {
    let at = at.div_ceil(4) * 4;
    match buf
        .get(at..at + 4)
        .map(|b| u32::from_le_bytes(b.try_into().unwrap()))
    {
        Some(0) => Ok(false),
        Some(1) => Ok(true),
        Some(other) => Err(invalid(format!("a boolean of value {other}"))),
        None => Err(invalid("a boolean runs past the message".into())),
    }
}

/// A signature at `at`; the offset after it.
fn read_signature(buf: &[u8], at: usize) -> io::Result<(String, usize)> {
    let len = *buf
        .get(at)
        .ok_or_else(|| invalid("a signature runs past the message".into()))? as usize;
    let bytes = buf
        .get(at + 1..at + 1 + len)
        .ok_or_else(|| invalid("a signature runs past the message".into()))?;
    Ok((
        String::from_utf8_lossy(bytes).into_owned(),
        at + 1 + len + 1,
    ))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn unit_names_become_systemds_object_path_labels() {
        assert_eq!(bus_label("k3s.service"), "k3s_2eservice");
        assert_eq!(bus_label("k3s-agent.service"), "k3s_2dagent_2eservice");
        assert_eq!(bus_label(""), "_");
    }

    #[test]
    fn a_method_call_is_laid_out_as_dbus_says() {
        let m = method_call(7, "/a", "i.f", "M", &["xy"]);
        // Fixed header: little-endian, METHOD_CALL, no flags, version 1,
        // body length 7 (u32 2, "xy", NUL), serial 7.
        assert_eq!(&m[..12], &[b'l', 1, 0, 1, 7, 0, 0, 0, 7, 0, 0, 0]);
        let fields_len = u32::from_le_bytes(m[12..16].try_into().unwrap()) as usize;
        // The body starts at the next multiple of 8 after the fields.
        let body_at = (16 + fields_len).div_ceil(8) * 8;
        assert_eq!(&m[body_at..], &[2, 0, 0, 0, b'x', b'y', 0]);
        // The first field is PATH, an object path "/a".
        assert_eq!(&m[16..24], &[1, 1, b'o', 0, 2, 0, 0, 0]);
        assert_eq!(&m[24..27], b"/a\0");
        // Read back as a reply would be, the fields parse.
        let (sig, _) = read_signature(&m, 17).unwrap();
        assert_eq!(sig, "o");
    }

    /// A reply as systemd sends it, from the fields given.
    fn reply(
        kind: u8,
        fields: &[(u8, &str, &str)],
        serial: u32,
        body: &[u8],
    ) -> (Vec<u8>, Vec<u8>) {
        let mut f = Vec::new();
        for (code, sig, value) in fields {
            pad(&mut f, 8);
            f.push(*code);
            put_signature(&mut f, sig);
            match *sig {
                "g" => put_signature(&mut f, value),
                _ => put_string(&mut f, value),
            }
        }
        pad(&mut f, 8);
        f.push(5);
        put_signature(&mut f, "u");
        pad(&mut f, 4);
        f.extend(serial.to_le_bytes());
        let mut header = vec![b'l', kind, 1, 1];
        header.extend((body.len() as u32).to_le_bytes());
        header.extend(99u32.to_le_bytes());
        header.extend((f.len() as u32).to_le_bytes());
        header.extend(f);
        (header, body.to_vec())
    }

    #[test]
    fn replies_and_errors_are_read_with_their_serial() {
        let mut body = Vec::new();
        put_signature(&mut body, "s");
        put_string(&mut body, "active");
        let (h, b) = reply(2, &[(8, "g", "v")], 3, &body);
        let (serial, got) = parse_reply(&h, b).unwrap().unwrap();
        assert_eq!(serial, 3);
        let Reply::Return { signature, body } = got else {
            panic!("{got:?}")
        };
        assert_eq!(signature, "v");
        let (inner, at) = read_signature(&body, 0).unwrap();
        assert_eq!(inner, "s");
        assert_eq!(read_string(&body, at).unwrap().0, "active");

        let (h, b) = reply(
            3,
            &[(4, "s", "org.freedesktop.DBus.Error.FileNotFound")],
            4,
            &[],
        );
        assert_eq!(
            parse_reply(&h, b).unwrap(),
            Some((
                4,
                Reply::Error("org.freedesktop.DBus.Error.FileNotFound".into())
            ))
        );
        // A signal is not a reply.
        let (h, b) = reply(4, &[], 5, &[]);
        assert_eq!(parse_reply(&h, b).unwrap(), None);
    }

    #[test]
    fn booleans_are_read_aligned_and_only_as_zero_or_one() {
        // A variant's signature `b` (3 bytes), then the value aligned to 4.
        let mut body = vec![1, b'b', 0, 0];
        body.extend(1u32.to_le_bytes());
        let (signature, at) = read_signature(&body, 0).unwrap();
        assert_eq!((signature.as_str(), at), ("b", 3));
        assert!(read_bool(&body, at).unwrap());
        body[4..8].copy_from_slice(&0u32.to_le_bytes());
        assert!(!read_bool(&body, at).unwrap());
        body[4..8].copy_from_slice(&2u32.to_le_bytes());
        assert!(read_bool(&body, at).is_err());
        assert!(read_bool(&body[..6], at).is_err());
    }

    #[test]
    fn a_truncated_message_is_an_error_not_a_panic() {
        let mut body = Vec::new();
        put_string(&mut body, "enabled");
        assert!(read_string(&body[..6], 0).is_err());
        assert!(read_signature(&[5, b'a'], 0).is_err());
        let (h, b) = reply(2, &[(8, "g", "s")], 3, &body);
        assert!(parse_reply(&h[..h.len() - 2], b).is_err());
    }
}
