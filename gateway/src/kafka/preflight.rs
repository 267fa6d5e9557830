//! A bounds check of request bodies before `kafka-protocol` decodes them.
//!
//! `kafka-protocol` 0.18 passes every array count it reads straight to
//! `Vec::with_capacity`: a 20-byte request claiming two billion topics
//! makes it ask for hundreds of gigabytes, and the process aborts (an
//! allocation failure is not a panic that can be caught). So each request
//! body is first walked against the shape of its API and version, like
//! mini-redis's `Frame::check` before `Frame::parse`: every string, bytes
//! and array length must fit in the bytes left, the arrays of one request
//! may hold at most [`ELEMENTS_MAX`] elements in all, and the walk must end
//! exactly at the end of the body. Only then is the body decoded.
//!
//! The shapes below mirror the Kafka message schemas for the versions this
//! node serves (tests encode every API at every advertised version with
//! `kafka-protocol` and check the walk agrees).

use kafka_protocol::messages::ApiKey;

/// Most array elements (summed over every array) in one request. Bounds
/// what decoding allocates: about 100 bytes per element.
pub const ELEMENTS_MAX: usize = 100_000;

/// Why a request body was refused. Nothing was decoded or done.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ShapeError {
    /// The body is shorter than its fields say, or a length is negative.
    #[error("malformed request: {0}")]
    Malformed(String),
    /// The request holds more array elements than [`ELEMENTS_MAX`].
    #[error("request holds more than {ELEMENTS_MAX} array elements")]
    TooManyElements,
}

#[derive(Debug, Clone, Copy)]
enum Kind {
    I8,
    I16,
    I32,
    I64,
    Bool,
    Uuid,
    /// A string, nullable or not.
    Str,
    /// Bytes, nullable or not.
    Bytes,
    /// An array of i32.
    Ints,
    /// An array of strings.
    Strs,
    /// An array of structs.
    Structs(&'static [Field]),
}

#[derive(Debug, Clone, Copy)]
struct Field {
    kind: Kind,
    /// First version with the field.
    min: i16,
    /// Last version with the field.
    max: i16,
}

const ANY: i16 = i16::MAX;

const fn f(kind: Kind) -> Field {
    Field {
        kind,
        min: 0,
        max: ANY,
    }
}

const fn from(min: i16, kind: Kind) -> Field {
    Field {
        kind,
        min,
        max: ANY,
    }
}

const fn until(max: i16, kind: Kind) -> Field {
    Field { kind, min: 0, max }
}

const fn between(min: i16, max: i16, kind: Kind) -> Field {
    Field { kind, min, max }
}

use Kind::*;

const API_VERSIONS: &[Field] = &[from(3, Str), from(3, Str)];
const METADATA: &[Field] = &[
    f(Structs(&[from(10, Uuid), f(Str)])),
    from(4, Bool),
    between(8, 10, Bool),
    from(8, Bool),
];
const PRODUCE: &[Field] = &[
    from(3, Str),
    f(I16),
    f(I32),
    f(Structs(&[
        until(12, Str),
        from(13, Uuid),
        f(Structs(&[f(I32), f(Bytes)])),
    ])),
];
const FETCH: &[Field] = &[
    until(14, I32),
    f(I32),
    f(I32),
    from(3, I32),
    from(4, I8),
    from(7, I32),
    from(7, I32),
    f(Structs(&[
        until(12, Str),
        from(13, Uuid),
        f(Structs(&[
            f(I32),
            from(9, I32),
            f(I64),
            from(12, I32),
            from(5, I64),
            f(I32),
        ])),
    ])),
    from(
        7,
        Structs(&[between(7, 12, Str), from(13, Uuid), from(7, Ints)]),
    ),
    from(11, Str),
];
const LIST_OFFSETS: &[Field] = &[
    f(I32),
    from(2, I8),
    f(Structs(&[
        f(Str),
        f(Structs(&[f(I32), from(4, I32), f(I64)])),
    ])),
    from(10, I32),
];
const INIT_PRODUCER_ID: &[Field] = &[f(Str), f(I32), from(3, I64), from(3, I16)];
const FIND_COORDINATOR: &[Field] = &[until(3, Str), from(1, I8), from(4, Strs)];
const JOIN_GROUP: &[Field] = &[
    f(Str),
    f(I32),
    from(1, I32),
    f(Str),
    from(5, Str),
    f(Str),
    f(Structs(&[f(Str), f(Bytes)])),
    from(8, Str),
];
const SYNC_GROUP: &[Field] = &[
    f(Str),
    f(I32),
    f(Str),
    from(3, Str),
    from(5, Str),
    from(5, Str),
    f(Structs(&[f(Str), f(Bytes)])),
];
const HEARTBEAT: &[Field] = &[f(Str), f(I32), f(Str), from(3, Str)];
const LEAVE_GROUP: &[Field] = &[
    f(Str),
    until(2, Str),
    from(3, Structs(&[from(3, Str), from(3, Str), from(5, Str)])),
];
const OFFSET_COMMIT: &[Field] = &[
    f(Str),
    f(I32),
    f(Str),
    from(7, Str),
    until(4, I64),
    f(Structs(&[
        f(Str),
        f(Structs(&[f(I32), f(I64), from(6, I32), f(Str)])),
    ])),
];
const OFFSET_FETCH: &[Field] = &[
    until(7, Str),
    until(7, Structs(&[f(Str), f(Ints)])),
    from(
        8,
        Structs(&[
            f(Str),
            from(9, Str),
            from(9, I32),
            f(Structs(&[f(Str), f(Ints)])),
        ]),
    ),
    from(7, Bool),
];
const CREATE_TOPICS: &[Field] = &[
    f(Structs(&[
        f(Str),
        f(I32),
        f(I16),
        f(Structs(&[f(I32), f(Ints)])),
        f(Structs(&[f(Str), f(Str)])),
    ])),
    f(I32),
    from(1, Bool),
];
const DELETE_TOPICS: &[Field] = &[from(6, Structs(&[f(Str), f(Uuid)])), until(5, Strs), f(I32)];
const DESCRIBE_CONFIGS: &[Field] = &[
    f(Structs(&[f(I8), f(Str), f(Strs)])),
    from(1, Bool),
    from(3, Bool),
];
const DESCRIBE_GROUPS: &[Field] = &[f(Strs), from(3, Bool)];
const LIST_GROUPS: &[Field] = &[from(4, Strs), from(5, Strs)];

/// The shape of `api`'s request: its fields and the first flexible version.
fn shape(api: ApiKey) -> Option<(&'static [Field], i16)> {
    Some(match api {
        ApiKey::ApiVersions => (API_VERSIONS, 3),
        ApiKey::Metadata => (METADATA, 9),
        ApiKey::Produce => (PRODUCE, 9),
        ApiKey::Fetch => (FETCH, 12),
        ApiKey::ListOffsets => (LIST_OFFSETS, 6),
        ApiKey::InitProducerId => (INIT_PRODUCER_ID, 2),
        ApiKey::FindCoordinator => (FIND_COORDINATOR, 3),
        ApiKey::JoinGroup => (JOIN_GROUP, 6),
        ApiKey::SyncGroup => (SYNC_GROUP, 4),
        ApiKey::Heartbeat => (HEARTBEAT, 4),
        ApiKey::LeaveGroup => (LEAVE_GROUP, 4),
        ApiKey::OffsetCommit => (OFFSET_COMMIT, 8),
        ApiKey::OffsetFetch => (OFFSET_FETCH, 6),
        ApiKey::CreateTopics => (CREATE_TOPICS, 5),
        ApiKey::DeleteTopics => (DELETE_TOPICS, 4),
        ApiKey::DescribeConfigs => (DESCRIBE_CONFIGS, 4),
        ApiKey::DescribeGroups => (DESCRIBE_GROUPS, 5),
        ApiKey::ListGroups => (LIST_GROUPS, 3),
        _ => return None,
    })
}

/// Checks the body of an `api` request of `version`. `Ok` means decoding
/// it allocates at most about [`ELEMENTS_MAX`] elements plus its bytes.
/// An API without a shape here is refused.
pub fn check(api: ApiKey, version: i16, body: &[u8]) -> Result<(), ShapeError> {
    let (fields, flexible_from) =
        shape(api).ok_or_else(|| ShapeError::Malformed(format!("no shape for {api:?}")))?;
    let mut walk = Walk {
        rest: body,
        version,
        flexible: version >= flexible_from,
        elements: 0,
    };
    walk.structure(fields)?;
    if !walk.rest.is_empty() {
        return Err(ShapeError::Malformed(format!(
            "{} bytes after the {api:?} v{version} request",
            walk.rest.len()
        )));
    }
    Ok(())
}

struct Walk<'a> {
    rest: &'a [u8],
    version: i16,
    flexible: bool,
    elements: usize,
}

fn short() -> ShapeError {
    ShapeError::Malformed("the request is shorter than its fields".into())
}

impl Walk<'_> {
    fn skip(&mut self, bytes: usize) -> Result<(), ShapeError> {
        if bytes > self.rest.len() {
            return Err(short());
        }
        self.rest = &self.rest[bytes..];
        Ok(())
    }

    fn fixed<const N: usize>(&mut self) -> Result<[u8; N], ShapeError> {
        let bytes = self.rest.get(..N).ok_or_else(short)?;
        let mut array = [0; N];
        array.copy_from_slice(bytes);
        self.rest = &self.rest[N..];
        Ok(array)
    }

    /// An unsigned varint as `kafka-protocol` reads it: at most five bytes.
    fn unsigned_varint(&mut self) -> Result<u32, ShapeError> {
        let mut value = 0u32;
        for index in 0..5 {
            let byte = u32::from(self.fixed::<1>()?[0]);
            value |= (byte & 0x7f) << (index * 7);
            if byte < 0x80 {
                break;
            }
        }
        Ok(value)
    }

    /// A length: compact (`n + 1`, 0 for null) in flexible versions, else
    /// an i16 or i32 (-1 for null). `None` for null.
    fn length(&mut self, wide: bool) -> Result<Option<usize>, ShapeError> {
        let length: i64 = if self.flexible {
            i64::from(self.unsigned_varint()?) - 1
        } else if wide {
            i64::from(i32::from_be_bytes(self.fixed()?))
        } else {
            i64::from(i16::from_be_bytes(self.fixed()?))
        };
        match length {
            -1 => Ok(None),
            length if length >= 0 => Ok(Some(length as usize)),
            length => Err(ShapeError::Malformed(format!("negative length {length}"))),
        }
    }

    /// An array count, checked against the bytes left (each element takes
    /// at least `element_bytes_min`) and the request's element budget.
    fn count(&mut self, element_bytes_min: usize) -> Result<usize, ShapeError> {
        let count = self.length(true)?.unwrap_or(0);
        if count > self.rest.len() / element_bytes_min {
            return Err(ShapeError::Malformed(format!(
                "an array of {count} cannot fit in {} bytes",
                self.rest.len()
            )));
        }
        self.elements += count;
        if self.elements > ELEMENTS_MAX {
            return Err(ShapeError::TooManyElements);
        }
        Ok(count)
    }

    fn structure(&mut self, fields: &[Field]) -> Result<(), ShapeError> {
        for field in fields {
            if (field.min..=field.max).contains(&self.version) {
                self.field(field.kind)?;
            }
        }
        if self.flexible {
            self.tagged_fields()?;
        }
        Ok(())
    }

    fn field(&mut self, kind: Kind) -> Result<(), ShapeError> {
        match kind {
            I8 | Bool => self.skip(1),
            I16 => self.skip(2),
            I32 => self.skip(4),
            I64 => self.skip(8),
            Uuid => self.skip(16),
            Str => {
                let length = self.length(false)?.unwrap_or(0);
                self.skip(length)
            }
            Bytes => {
                let length = self.length(true)?.unwrap_or(0);
                self.skip(length)
            }
            Ints => {
                let count = self.count(4)?;
                self.skip(count * 4)
            }
            Strs => {
                let count = self.count(if self.flexible { 1 } else { 2 })?;
                for _ in 0..count {
                    self.field(Str)?;
                }
                Ok(())
            }
            Structs(fields) => {
                let count = self.count(1)?;
                for _ in 0..count {
                    self.structure(fields)?;
                }
                Ok(())
            }
        }
    }

    fn tagged_fields(&mut self) -> Result<(), ShapeError> {
        let count = self.unsigned_varint()?;
        // Each tagged field takes at least two bytes, which bounds the loop.
        if count as usize > self.rest.len() / 2 {
            return Err(short());
        }
        for _ in 0..count {
            let _tag = self.unsigned_varint()?;
            let size = self.unsigned_varint()?;
            self.skip(size as usize)?;
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests;
