//! The protocol between a hub and an attached process: the hand-shake on the control socket and
//! the records in the rings, encoded by hand (little-endian, lengths first) and decoded with
//! every length checked, since the other side may send anything.

/// Bump when a record or the shared layout changes meaning.
pub const VERSION: u32 = 1;
/// The first bytes of a hello and a welcome.
pub const MAGIC: &[u8; 8] = b"JSONBUS\0";

/// From an attached process to the hub.
#[derive(Debug, PartialEq, Eq)]
pub enum Up<'a> {
    /// `parent`: the delivery whose callback published it (0: none).
    Publish {
        parent: u64,
        topic: &'a str,
        reply: &'a str,
        json: &'a [u8],
    },
    /// The delivery `token` is done: its callback returned, or it was dropped.
    Ack {
        token: u64,
    },
    /// Answer `token` once everything published before it is done.
    Flush {
        token: u64,
    },
    Subscribe {
        request: u64,
        id: i64,
        pattern: &'a str,
        group: &'a str,
    },
    Unsubscribe {
        id: i64,
    },
}

/// From the hub to an attached process.
#[derive(Debug, PartialEq, Eq)]
pub enum Down<'a> {
    Deliver {
        token: u64,
        id: i64,
        seq: u64,
        published_ns: u64,
        topic: &'a str,
        reply: &'a str,
        json: &'a [u8],
    },
    Flushed {
        token: u64,
    },
    /// `status` 0, or the code of a failed subscribe with its message.
    Subscribed {
        request: u64,
        status: i32,
        message: &'a str,
    },
    /// Whether a request this process published (its reply topic `reply`) matched any
    /// subscription: its publish call waits for this.
    Routed {
        reply: &'a str,
        routed: bool,
    },
}

const PUBLISH: u8 = 1;
const ACK: u8 = 2;
const FLUSH: u8 = 3;
const SUBSCRIBE: u8 = 4;
const UNSUBSCRIBE: u8 = 5;
const DELIVER: u8 = 16;
const FLUSHED: u8 = 17;
const SUBSCRIBED: u8 = 18;
const ROUTED: u8 = 19;

/// Appends to a record being built.
struct Out<'a>(&'a mut Vec<u8>);

impl Out<'_> {
    fn u8(&mut self, v: u8) -> &mut Self {
        self.0.push(v);
        self
    }
    fn u16(&mut self, v: u16) -> &mut Self {
        self.0.extend_from_slice(&v.to_le_bytes());
        self
    }
    fn u32(&mut self, v: u32) -> &mut Self {
        self.0.extend_from_slice(&v.to_le_bytes());
        self
    }
    fn u64(&mut self, v: u64) -> &mut Self {
        self.0.extend_from_slice(&v.to_le_bytes());
        self
    }
    fn bytes(&mut self, v: &[u8]) -> &mut Self {
        self.0.extend_from_slice(v);
        self
    }
}

/// Reads a record, refusing anything short or malformed.
struct In<'a>(&'a [u8]);

impl<'a> In<'a> {
    fn take(&mut self, n: usize) -> Option<&'a [u8]> {
        if self.0.len() < n {
            return None;
        }
        let (head, rest) = self.0.split_at(n);
        self.0 = rest;
        Some(head)
    }
    fn u8(&mut self) -> Option<u8> {
        self.take(1).map(|b| b[0])
    }
    fn u16(&mut self) -> Option<u16> {
        self.take(2).map(|b| u16::from_le_bytes([b[0], b[1]]))
    }
    fn u32(&mut self) -> Option<u32> {
        self.take(4)
            .and_then(|b| b.try_into().ok())
            .map(u32::from_le_bytes)
    }
    fn u64(&mut self) -> Option<u64> {
        self.take(8)
            .and_then(|b| b.try_into().ok())
            .map(u64::from_le_bytes)
    }
    fn str(&mut self, n: usize) -> Option<&'a str> {
        self.take(n).and_then(|b| std::str::from_utf8(b).ok())
    }
    fn end(&self) -> Option<()> {
        self.0.is_empty().then_some(())
    }
}

fn len16(s: &str) -> u16 {
    s.len().min(u16::MAX as usize) as u16
}

impl Up<'_> {
    /// Replaces `buf` with the record.
    pub fn encode(&self, buf: &mut Vec<u8>) {
        buf.clear();
        let mut o = Out(buf);
        match *self {
            Up::Publish {
                parent,
                topic,
                reply,
                json,
            } => {
                o.u8(PUBLISH)
                    .u64(parent)
                    .u16(len16(topic))
                    .u16(len16(reply));
                o.u32(json.len() as u32)
                    .bytes(topic.as_bytes())
                    .bytes(reply.as_bytes())
                    .bytes(json);
            }
            Up::Ack { token } => {
                o.u8(ACK).u64(token);
            }
            Up::Flush { token } => {
                o.u8(FLUSH).u64(token);
            }
            Up::Subscribe {
                request,
                id,
                pattern,
                group,
            } => {
                o.u8(SUBSCRIBE).u64(request).u64(id as u64);
                o.u16(len16(pattern)).u16(len16(group));
                o.bytes(pattern.as_bytes()).bytes(group.as_bytes());
            }
            Up::Unsubscribe { id } => {
                o.u8(UNSUBSCRIBE).u64(id as u64);
            }
        }
    }

    /// The record in `b`, or None if it is not one.
    pub fn decode(b: &[u8]) -> Option<Up<'_>> {
        let mut i = In(b);
        let up = match i.u8()? {
            PUBLISH => {
                let parent = i.u64()?;
                let (t, r, j) = (i.u16()? as usize, i.u16()? as usize, i.u32()? as usize);
                Up::Publish {
                    parent,
                    topic: i.str(t)?,
                    reply: i.str(r)?,
                    json: i.take(j)?,
                }
            }
            ACK => Up::Ack { token: i.u64()? },
            FLUSH => Up::Flush { token: i.u64()? },
            SUBSCRIBE => {
                let (request, id) = (i.u64()?, i.u64()? as i64);
                let (p, g) = (i.u16()? as usize, i.u16()? as usize);
                Up::Subscribe {
                    request,
                    id,
                    pattern: i.str(p)?,
                    group: i.str(g)?,
                }
            }
            UNSUBSCRIBE => Up::Unsubscribe {
                id: i.u64()? as i64,
            },
            _ => return None,
        };
        i.end()?;
        Some(up)
    }
}

impl Down<'_> {
    pub fn encode(&self, buf: &mut Vec<u8>) {
        buf.clear();
        let mut o = Out(buf);
        match *self {
            Down::Deliver {
                token,
                id,
                seq,
                published_ns,
                topic,
                reply,
                json,
            } => {
                o.u8(DELIVER)
                    .u64(token)
                    .u64(id as u64)
                    .u64(seq)
                    .u64(published_ns);
                o.u16(len16(topic)).u16(len16(reply)).u32(json.len() as u32);
                o.bytes(topic.as_bytes())
                    .bytes(reply.as_bytes())
                    .bytes(json);
            }
            Down::Flushed { token } => {
                o.u8(FLUSHED).u64(token);
            }
            Down::Subscribed {
                request,
                status,
                message,
            } => {
                o.u8(SUBSCRIBED).u64(request).u32(status as u32);
                o.u16(len16(message))
                    .bytes(&message.as_bytes()[..len16(message) as usize]);
            }
            Down::Routed { reply, routed } => {
                o.u8(ROUTED)
                    .u8(routed as u8)
                    .u16(len16(reply))
                    .bytes(reply.as_bytes());
            }
        }
    }

    pub fn decode(b: &[u8]) -> Option<Down<'_>> {
        let mut i = In(b);
        let down = match i.u8()? {
            DELIVER => {
                let (token, id, seq, published_ns) =
                    (i.u64()?, i.u64()? as i64, i.u64()?, i.u64()?);
                let (t, r, j) = (i.u16()? as usize, i.u16()? as usize, i.u32()? as usize);
                Down::Deliver {
                    token,
                    id,
                    seq,
                    published_ns,
                    topic: i.str(t)?,
                    reply: i.str(r)?,
                    json: i.take(j)?,
                }
            }
            FLUSHED => Down::Flushed { token: i.u64()? },
            SUBSCRIBED => {
                let (request, status) = (i.u64()?, i.u32()? as i32);
                let n = i.u16()? as usize;
                Down::Subscribed {
                    request,
                    status,
                    message: i.str(n)?,
                }
            }
            ROUTED => {
                let routed = match i.u8()? {
                    0 => false,
                    1 => true,
                    _ => return None,
                };
                let n = i.u16()? as usize;
                Down::Routed {
                    reply: i.str(n)?,
                    routed,
                }
            }
            _ => return None,
        };
        i.end()?;
        Some(down)
    }
}

/// The attached process's first message on the control socket.
pub fn hello(buf: &mut Vec<u8>) {
    buf.clear();
    Out(buf).bytes(MAGIC).u32(VERSION);
}

/// The protocol version of a hello; None if it is not one.
pub fn read_hello(b: &[u8]) -> Option<u32> {
    let mut i = In(b);
    (i.take(8)? == MAGIC).then_some(())?;
    let v = i.u32()?;
    i.end()?;
    Some(v)
}

/// The hub's answer: its descriptors travel with it when `status` is 0.
#[derive(Debug, PartialEq, Eq, Clone)]
pub struct Welcome {
    pub version: u32,
    /// 0, or the status code of the refusal, with `message`.
    pub status: i32,
    pub ring_bytes: u64,
    pub max_message_bytes: u64,
    pub max_depth: u32,
    /// This peer's number at the hub, unique for the hub's life.
    pub peer: u64,
    pub message: String,
}

impl Welcome {
    pub fn encode(&self, buf: &mut Vec<u8>) {
        buf.clear();
        let mut o = Out(buf);
        o.bytes(MAGIC).u32(self.version).u32(self.status as u32);
        o.u64(self.ring_bytes)
            .u64(self.max_message_bytes)
            .u32(self.max_depth);
        o.u64(self.peer).u16(len16(&self.message));
        o.bytes(&self.message.as_bytes()[..len16(&self.message) as usize]);
    }

    pub fn decode(b: &[u8]) -> Option<Welcome> {
        let mut i = In(b);
        (i.take(8)? == MAGIC).then_some(())?;
        let (version, status) = (i.u32()?, i.u32()? as i32);
        let w = Welcome {
            version,
            status,
            ring_bytes: i.u64()?,
            max_message_bytes: i.u64()?,
            max_depth: i.u32()?,
            peer: i.u64()?,
            message: {
                let n = i.u16()? as usize;
                i.str(n)?.to_string()
            },
        };
        i.end()?;
        Some(w)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_record_round_trips_and_every_truncation_is_refused() {
        let ups = [
            Up::Publish {
                parent: 7,
                topic: "a.b",
                reply: "_INBOX.x.1",
                json: b"{\"k\":1}",
            },
            Up::Ack { token: 9 },
            Up::Flush { token: 3 },
            Up::Subscribe {
                request: 1,
                id: -4,
                pattern: "a.>",
                group: "g",
            },
            Up::Unsubscribe { id: 12 },
        ];
        let mut buf = Vec::new();
        for up in &ups {
            up.encode(&mut buf);
            assert_eq!(Up::decode(&buf).as_ref(), Some(up));
            for n in 0..buf.len() {
                assert_eq!(Up::decode(&buf[..n]), None, "{up:?} cut at {n}");
            }
            buf.push(0);
            assert_eq!(Up::decode(&buf), None, "trailing bytes");
        }
        let downs = [
            Down::Deliver {
                token: 1,
                id: 2,
                seq: 3,
                published_ns: 4,
                topic: "t",
                reply: "",
                json: b"[]",
            },
            Down::Flushed { token: 5 },
            Down::Subscribed {
                request: 6,
                status: -4,
                message: "bad",
            },
            Down::Routed {
                reply: "_INBOX.a.2",
                routed: false,
            },
        ];
        for down in &downs {
            down.encode(&mut buf);
            assert_eq!(Down::decode(&buf).as_ref(), Some(down));
            for n in 0..buf.len() {
                assert_eq!(Down::decode(&buf[..n]), None);
            }
        }
        let w = Welcome {
            version: VERSION,
            status: 0,
            ring_bytes: 65536,
            max_message_bytes: 10,
            max_depth: 3,
            peer: 8,
            message: String::new(),
        };
        w.encode(&mut buf);
        assert_eq!(Welcome::decode(&buf), Some(w));
        hello(&mut buf);
        assert_eq!(read_hello(&buf), Some(VERSION));
        assert_eq!(read_hello(b"JSONBUS\0\x01"), None);
    }

    #[test]
    fn invalid_utf8_in_a_topic_is_refused() {
        let mut buf = Vec::new();
        Up::Publish {
            parent: 0,
            topic: "ab",
            reply: "",
            json: b"1",
        }
        .encode(&mut buf);
        buf[1 + 8 + 8] = 0xff;
        assert_eq!(Up::decode(&buf), None);
    }
}
