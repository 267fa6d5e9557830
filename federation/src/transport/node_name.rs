//! [`NodeName`]: the validated name a gateway carries in its certificate.

use std::fmt;
use std::sync::Arc;

use serde::{Deserialize, Serialize};

use super::error::TransportError;

/// Longest node name, in bytes: one DNS label, so the name fits a
/// certificate's DNS subject-alternative name and a TLS server name.
pub const NODE_NAME_BYTES_MAX: usize = 63;

/// A gateway node's name, such as `us-east-1`: 1 to 63 bytes of ASCII
/// lowercase letters, digits and `-`, starting and ending with a letter or
/// digit.
///
/// The rule is the one of a DNS label, because the name is written into the
/// node certificate as a DNS subject-alternative name and peers verify it as
/// the TLS server name; anything looser would be refused by rustls at
/// connect time instead of at parse time. The name is also the certificate's
/// common name, which is how an accepting node learns who connected.
#[derive(Clone, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(try_from = "String", into = "String")]
pub struct NodeName(Arc<str>);

impl NodeName {
    /// Validates `name` as a node name.
    pub fn parse(name: &str) -> Result<Self, TransportError> {
        let invalid = |reason: &'static str| TransportError::InvalidNodeName {
            name: name.chars().take(NODE_NAME_BYTES_MAX + 1).collect(),
            reason,
        };
        if name.is_empty() {
            return Err(invalid("empty"));
        }
        if name.len() > NODE_NAME_BYTES_MAX {
            return Err(invalid("longer than 63 bytes"));
        }
        if !name
            .bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-')
        {
            return Err(invalid("only a-z, 0-9 and '-' are allowed"));
        }
        if name.starts_with('-') || name.ends_with('-') {
            return Err(invalid("must start and end with a letter or digit"));
        }
        Ok(Self(Arc::from(name)))
    }

    /// The name as text.
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl TryFrom<String> for NodeName {
    type Error = TransportError;
    fn try_from(value: String) -> Result<Self, Self::Error> {
        Self::parse(&value)
    }
}

impl From<NodeName> for String {
    fn from(value: NodeName) -> Self {
        value.0.to_string()
    }
}

impl fmt::Display for NodeName {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl fmt::Debug for NodeName {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "NodeName({})", &self.0)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn node_name_accepts_dns_labels() {
        for name in ["a", "us-east-1", "node0", &"x".repeat(NODE_NAME_BYTES_MAX)] {
            assert_eq!(NodeName::parse(name).unwrap().as_str(), name);
        }
    }

    #[test]
    fn node_name_rejects_what_a_dns_label_cannot_hold() {
        for name in [
            "",
            "-a",
            "a-",
            "Upper",
            "under_score",
            "dot.ted",
            "sp ace",
            "é",
            &"x".repeat(NODE_NAME_BYTES_MAX + 1),
        ] {
            assert!(
                matches!(
                    NodeName::parse(name),
                    Err(TransportError::InvalidNodeName { .. })
                ),
                "{name:?} should be refused"
            );
        }
    }
}
