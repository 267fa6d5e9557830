//! Which records of a source topic a queue takes: a tag expression over the
//! record's `tags` header (RocketMQ style: `*`, or `created || paid`), an
//! optional header equality and an optional key prefix, all of which must
//! hold.
//!
//! The `tags` header holds one tag or several separated by commas
//! (`created,priority`); a tag expression matches when any of its tags is
//! among them. A record without a `tags` header matches only `*`.

use bytes::Bytes;
use meshgate_storage::Record;

/// The header that carries a record's tags.
pub const TAGS_HEADER: &str = "tags";
/// Longest tag expression accepted, in bytes.
pub const TAG_EXPRESSION_BYTES_MAX: usize = 1024;
/// Most tags in one expression.
pub const TAGS_MAX: usize = 64;

/// Why a filter could not be parsed. Nothing is created.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum FilterError {
    /// The expression is empty (use `*` to take every record).
    #[error("the tag expression is empty (use `*` for every record)")]
    Empty,
    /// The expression is longer than [`TAG_EXPRESSION_BYTES_MAX`].
    #[error("the tag expression is {bytes} bytes, more than {TAG_EXPRESSION_BYTES_MAX}")]
    TooLong {
        /// Its length.
        bytes: usize,
    },
    /// A syntax error at a byte position.
    #[error("invalid tag expression {expression:?} at byte {position}: {problem}")]
    Syntax {
        /// The expression.
        expression: String,
        /// Where the problem starts.
        position: usize,
        /// What is wrong.
        problem: &'static str,
    },
    /// More than [`TAGS_MAX`] tags.
    #[error("the tag expression names more than {TAGS_MAX} tags")]
    TooManyTags,
    /// A header filter without `=`.
    #[error("a header filter is KEY=VALUE, got {0:?}")]
    Header(String),
}

/// A parsed tag expression.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum TagExpression {
    /// `*`: every record, tagged or not.
    Any,
    /// `a || b`: records carrying at least one of these tags.
    AnyOf(Vec<String>),
}

impl TagExpression {
    /// Parses `*` or `tag (|| tag)*`; tags are runs of letters, digits and
    /// `-_.:/`, spaces around `||` are ignored.
    pub fn parse(expression: &str) -> Result<Self, FilterError> {
        if expression.len() > TAG_EXPRESSION_BYTES_MAX {
            return Err(FilterError::TooLong {
                bytes: expression.len(),
            });
        }
        let trimmed = expression.trim();
        if trimmed.is_empty() {
            return Err(FilterError::Empty);
        }
        if trimmed == "*" {
            return Ok(Self::Any);
        }
        let syntax = |position: usize, problem: &'static str| FilterError::Syntax {
            expression: expression.to_string(),
            position,
            problem,
        };
        let mut tags: Vec<String> = Vec::new();
        let mut position = 0;
        for part in expression.split("||") {
            let tag = part.trim();
            let at = position + (part.len() - part.trim_start().len());
            if tag.is_empty() {
                return Err(syntax(at, "a tag is missing around `||`"));
            }
            let problems = [
                (tag.find('|'), "a single `|` (use `||`)"),
                (
                    tag.find('*'),
                    "`*` stands alone, it cannot be combined with tags",
                ),
                (
                    tag.find(char::is_whitespace),
                    "a space inside a tag (separate tags with `||`)",
                ),
                (
                    tag.find(|c: char| !is_tag_char(c)),
                    "a character not allowed in a tag",
                ),
            ];
            if let Some((Some(bad), problem)) = problems.into_iter().find(|(at, _)| at.is_some()) {
                return Err(syntax(at + bad, problem));
            }
            if !tags.iter().any(|known| known == tag) {
                tags.push(tag.to_string());
            }
            if tags.len() > TAGS_MAX {
                return Err(FilterError::TooManyTags);
            }
            position += part.len() + 2;
        }
        Ok(Self::AnyOf(tags))
    }

    /// True when a record with this `tags` header value matches.
    pub fn matches(&self, tags_header: Option<&[u8]>) -> bool {
        match self {
            Self::Any => true,
            Self::AnyOf(wanted) => tags_header.is_some_and(|header| {
                header
                    .split(|byte| *byte == b',')
                    .map(|tag| tag.trim_ascii())
                    .any(|tag| wanted.iter().any(|want| want.as_bytes() == tag))
            }),
        }
    }
}

impl std::fmt::Display for TagExpression {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Self::Any => f.write_str("*"),
            Self::AnyOf(tags) => f.write_str(&tags.join(" || ")),
        }
    }
}

fn is_tag_char(c: char) -> bool {
    c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.' | ':' | '/')
}

/// A queue's filter: every set part must hold.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Filter {
    /// Over the `tags` header.
    pub tags: TagExpression,
    /// A header that must be present with exactly this value.
    pub header: Option<(String, Bytes)>,
    /// Bytes the record key must start with (a record without a key fails).
    pub key_prefix: Option<Bytes>,
}

impl Default for Filter {
    fn default() -> Self {
        Self {
            tags: TagExpression::Any,
            header: None,
            key_prefix: None,
        }
    }
}

impl Filter {
    /// Builds a filter from its text parts: a tag expression (`None`: `*`),
    /// `KEY=VALUE` for the header, and a key prefix.
    pub fn parse(
        tags: Option<&str>,
        header: Option<&str>,
        key_prefix: Option<&str>,
    ) -> Result<Self, FilterError> {
        let tags = match tags {
            Some(expression) => TagExpression::parse(expression)?,
            None => TagExpression::Any,
        };
        let header = match header {
            Some(text) => {
                let (key, value) = text
                    .split_once('=')
                    .filter(|(key, _)| !key.is_empty())
                    .ok_or_else(|| FilterError::Header(text.to_string()))?;
                Some((key.to_string(), Bytes::copy_from_slice(value.as_bytes())))
            }
            None => None,
        };
        Ok(Self {
            tags,
            header,
            key_prefix: key_prefix.map(|prefix| Bytes::copy_from_slice(prefix.as_bytes())),
        })
    }

    /// True when the record goes to the queue.
    pub fn matches(&self, record: &Record) -> bool {
        if let Some(prefix) = &self.key_prefix
            && !record
                .key
                .as_ref()
                .is_some_and(|key| key.starts_with(prefix))
        {
            return false;
        }
        if let Some((key, value)) = &self.header
            && !record
                .headers
                .iter()
                .any(|header| &header.key == key && header.value == value)
        {
            return false;
        }
        self.tags
            .matches(record.header(TAGS_HEADER).map(|value| value.as_ref()))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use meshgate_storage::Header;

    fn record(key: Option<&str>, headers: &[(&str, &str)]) -> Record {
        Record {
            key: key.map(|key| Bytes::copy_from_slice(key.as_bytes())),
            headers: headers
                .iter()
                .map(|(key, value)| Header {
                    key: key.to_string(),
                    value: Bytes::copy_from_slice(value.as_bytes()),
                })
                .collect(),
            ..Record::default()
        }
    }

    #[test]
    fn star_matches_everything_even_untagged_records() {
        let filter = Filter::default();
        assert!(filter.matches(&record(None, &[])));
        assert!(filter.matches(&record(Some("k"), &[("tags", "x")])));
    }

    #[test]
    fn alternatives_match_any_listed_tag() {
        let tags = TagExpression::parse("created || paid").unwrap();
        assert_eq!(tags.to_string(), "created || paid");
        assert!(tags.matches(Some(b"paid")));
        assert!(tags.matches(Some(b"shipped, created")));
        assert!(!tags.matches(Some(b"shipped")));
        assert!(!tags.matches(None));
        assert!(!tags.matches(Some(b"createdx")));
    }

    #[test]
    fn invalid_expressions_are_typed_errors_with_a_position() {
        assert_eq!(TagExpression::parse("  "), Err(FilterError::Empty));
        for (expression, position) in [
            ("created ||", 10),
            ("|| paid", 0),
            ("created | paid", 8),
            ("created || * ", 11),
            ("a b", 1),
            ("created |||| paid", 10),
        ] {
            match TagExpression::parse(expression) {
                Err(FilterError::Syntax { position: at, .. }) => {
                    assert_eq!(at, position, "{expression:?}")
                }
                other => panic!("{expression:?} parsed as {other:?}"),
            }
        }
        assert!(TagExpression::parse("a||".repeat(100).trim_end_matches("||")).is_ok());
        let many: Vec<String> = (0..65).map(|n| format!("t{n}")).collect();
        assert_eq!(
            TagExpression::parse(&many.join("||")),
            Err(FilterError::TooManyTags)
        );
    }

    #[test]
    fn header_and_key_prefix_must_both_hold() {
        let filter = Filter::parse(Some("created"), Some("region=eu"), Some("cust-")).unwrap();
        assert!(filter.matches(&record(
            Some("cust-1"),
            &[("tags", "created"), ("region", "eu")]
        )));
        assert!(!filter.matches(&record(
            Some("shop-1"),
            &[("tags", "created"), ("region", "eu")]
        )));
        assert!(!filter.matches(&record(
            Some("cust-1"),
            &[("tags", "created"), ("region", "us")]
        )));
        assert!(!filter.matches(&record(None, &[("tags", "created"), ("region", "eu")])));
        assert_eq!(
            Filter::parse(None, Some("novalue"), None),
            Err(FilterError::Header("novalue".into()))
        );
    }
}
