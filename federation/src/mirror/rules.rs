//! Mirroring rules: which topics mirror between which regions, over which
//! links, with which filter. Rules travel by gossip as configuration
//! entries (`mirror-rule/<name>`), so every region converges on the same set.

use std::collections::BTreeSet;

use bytes::Bytes;
use meshgate_storage::{Record, RegionId, validate_name};
use serde::{Deserialize, Serialize};

/// The gossip configuration key prefix of mirroring rules.
pub const RULE_KEY_PREFIX: &str = "mirror-rule/";
/// Longest rule name.
pub const RULE_NAME_BYTES_MAX: usize = 63;
/// Longest topic pattern.
pub const PATTERN_BYTES_MAX: usize = 249;
/// Most regions in one rule.
pub const RULE_REGIONS_MAX: usize = 32;

/// Why a rule was refused. Nothing is stored or spread.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum RuleError {
    /// The rule name breaks the naming rule.
    #[error("rule name: {0}")]
    Name(String),
    /// The topic pattern is empty, too long or holds characters other than
    /// topic-name characters and `*`.
    #[error("topic pattern {pattern:?}: {problem}")]
    Pattern {
        /// The pattern.
        pattern: String,
        /// What is wrong.
        problem: String,
    },
    /// Fewer than two regions, too many, or an invalid region name.
    #[error("regions: {0}")]
    Regions(String),
    /// The topology names regions outside the rule, or misses some.
    #[error("topology: {0}")]
    Topology(String),
}

/// A glob over topic names: `*` matches any run of characters (possibly
/// empty); every other character matches itself. `orders*` matches
/// `orders` and `orders.eu`; `*.audit` matches `billing.audit`.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(try_from = "String", into = "String")]
pub struct TopicPattern(String);

impl TopicPattern {
    /// Validates a pattern.
    pub fn parse(pattern: &str) -> Result<Self, RuleError> {
        let bad = |problem: &str| RuleError::Pattern {
            pattern: pattern.to_string(),
            problem: problem.to_string(),
        };
        if pattern.is_empty() {
            return Err(bad("empty"));
        }
        if pattern.len() > PATTERN_BYTES_MAX {
            return Err(bad("longer than 249 bytes"));
        }
        if !pattern
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.' | '*'))
        {
            return Err(bad("allowed are topic-name characters and '*'"));
        }
        Ok(Self(pattern.to_string()))
    }

    /// True when `topic` matches.
    pub fn matches(&self, topic: &str) -> bool {
        glob_matches(self.0.as_bytes(), topic.as_bytes())
    }

    /// The pattern as written.
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

/// Iterative glob match with backtracking to the last `*` (linear in
/// practice, quadratic at worst; patterns are short).
fn glob_matches(pattern: &[u8], text: &[u8]) -> bool {
    let (mut p, mut t) = (0, 0);
    let mut star: Option<(usize, usize)> = None;
    while t < text.len() {
        if p < pattern.len() && pattern[p] == b'*' {
            star = Some((p, t));
            p += 1;
        } else if p < pattern.len() && pattern[p] == text[t] {
            p += 1;
            t += 1;
        } else if let Some((star_p, star_t)) = star {
            p = star_p + 1;
            t = star_t + 1;
            star = Some((star_p, star_t + 1));
        } else {
            return false;
        }
    }
    pattern[p..].iter().all(|&c| c == b'*')
}

impl TryFrom<String> for TopicPattern {
    type Error = RuleError;
    fn try_from(value: String) -> Result<Self, Self::Error> {
        Self::parse(&value)
    }
}

impl From<TopicPattern> for String {
    fn from(value: TopicPattern) -> Self {
        value.0
    }
}

/// Which regions pull from which: the links of a rule. Each link carries
/// data both ways. Because appends are idempotent and contiguous per
/// origin, any connected topology converges without loops.
#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Topology {
    /// Every region links to every other.
    #[default]
    FullMesh,
    /// Regions in this order, each linked to its neighbours.
    Chain(Vec<RegionId>),
    /// One hub linked to every other region (the spokes).
    Hub(RegionId),
}

/// Which records of a mirrored topic cross the link. Records that do not
/// match travel as gap markers: offsets and origin seqs stay aligned in
/// every region, the payload stays home.
#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize, Deserialize)]
pub struct MirrorFilter {
    /// Only records with this header key and value.
    pub header: Option<(String, String)>,
    /// Only records whose key starts with these bytes.
    pub key_prefix: Option<Bytes>,
}

impl MirrorFilter {
    /// True when `record` crosses the link.
    pub fn passes(&self, record: &Record) -> bool {
        let header_ok = self.header.as_ref().is_none_or(|(key, value)| {
            record
                .headers
                .iter()
                .any(|h| h.key == *key && h.value.as_ref() == value.as_bytes())
        });
        let key_ok = self.key_prefix.as_ref().is_none_or(|prefix| {
            record
                .key
                .as_ref()
                .is_some_and(|key| key.starts_with(prefix))
        });
        header_ok && key_ok
    }

    /// True when every record passes.
    pub fn is_empty(&self) -> bool {
        self.header.is_none() && self.key_prefix.is_none()
    }
}

/// One mirroring rule.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct MirrorRule {
    /// Its name (the key it travels under).
    pub name: String,
    /// Which topics.
    pub topics: TopicPattern,
    /// Between which regions (at least two).
    pub regions: BTreeSet<RegionId>,
    /// Over which links.
    #[serde(default)]
    pub topology: Topology,
    /// Which records.
    #[serde(default)]
    pub filter: MirrorFilter,
}

impl MirrorRule {
    /// Checks names, region counts and that the topology spans exactly the
    /// rule's regions.
    pub fn validate(&self) -> Result<(), RuleError> {
        validate_name("rule", &self.name, RULE_NAME_BYTES_MAX)
            .map_err(|e| RuleError::Name(e.to_string()))?;
        if self.regions.len() < 2 {
            return Err(RuleError::Regions(
                "a rule links at least two regions".into(),
            ));
        }
        if self.regions.len() > RULE_REGIONS_MAX {
            return Err(RuleError::Regions(format!(
                "at most {RULE_REGIONS_MAX} regions"
            )));
        }
        match &self.topology {
            Topology::FullMesh => {}
            Topology::Chain(order) => {
                let listed: BTreeSet<&RegionId> = order.iter().collect();
                if listed.len() != order.len() {
                    return Err(RuleError::Topology("a chain lists each region once".into()));
                }
                if listed != self.regions.iter().collect() {
                    return Err(RuleError::Topology(
                        "a chain lists exactly the rule's regions".into(),
                    ));
                }
            }
            Topology::Hub(hub) => {
                if !self.regions.contains(hub) {
                    return Err(RuleError::Topology(format!(
                        "hub {hub} is not one of the rule's regions"
                    )));
                }
            }
        }
        Ok(())
    }

    /// The regions `region` pulls this rule's topics from (its neighbours
    /// in the topology); empty when the region is not in the rule.
    pub fn sources_for(&self, region: &RegionId) -> BTreeSet<RegionId> {
        if !self.regions.contains(region) {
            return BTreeSet::new();
        }
        match &self.topology {
            Topology::FullMesh => self
                .regions
                .iter()
                .filter(|r| *r != region)
                .cloned()
                .collect(),
            Topology::Chain(order) => {
                let Some(index) = order.iter().position(|r| r == region) else {
                    return BTreeSet::new();
                };
                let before = index.checked_sub(1).map(|i| order[i].clone());
                let after = order.get(index + 1).cloned();
                before.into_iter().chain(after).collect()
            }
            Topology::Hub(hub) if hub == region => self
                .regions
                .iter()
                .filter(|r| *r != region)
                .cloned()
                .collect(),
            Topology::Hub(hub) => BTreeSet::from([hub.clone()]),
        }
    }

    /// The gossip key of this rule.
    pub fn key(&self) -> String {
        format!("{RULE_KEY_PREFIX}{}", self.name)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn region(name: &str) -> RegionId {
        RegionId::parse(name).expect("valid")
    }

    fn rule(topology: Topology) -> MirrorRule {
        MirrorRule {
            name: "orders".into(),
            topics: TopicPattern::parse("orders*").expect("valid"),
            regions: ["a", "b", "c"].into_iter().map(region).collect(),
            topology,
            filter: MirrorFilter::default(),
        }
    }

    #[test]
    fn patterns_match_like_shell_globs() {
        let cases = [
            ("orders*", "orders", true),
            ("orders*", "orders.eu", true),
            ("orders*", "order", false),
            ("*.audit", "billing.audit", true),
            ("*.audit", "billing.audits", false),
            ("*", "anything", true),
            ("a*b*c", "aXXbYYc", true),
            ("a*b*c", "aXXbYY", false),
            ("exact", "exact", true),
            ("exact", "exactly", false),
        ];
        for (pattern, topic, expected) in cases {
            let pattern = TopicPattern::parse(pattern).expect("valid");
            assert_eq!(pattern.matches(topic), expected, "{pattern:?} vs {topic}");
        }
        assert!(TopicPattern::parse("bad/slash").is_err());
        assert!(TopicPattern::parse("").is_err());
    }

    #[test]
    fn topologies_give_each_region_its_neighbours() {
        let mesh = rule(Topology::FullMesh);
        assert_eq!(
            mesh.sources_for(&region("a")),
            [region("b"), region("c")].into()
        );
        let chain = rule(Topology::Chain(vec![region("a"), region("b"), region("c")]));
        assert_eq!(chain.sources_for(&region("a")), [region("b")].into());
        assert_eq!(
            chain.sources_for(&region("b")),
            [region("a"), region("c")].into()
        );
        assert_eq!(chain.sources_for(&region("c")), [region("b")].into());
        let hub = rule(Topology::Hub(region("b")));
        assert_eq!(hub.sources_for(&region("a")), [region("b")].into());
        assert_eq!(
            hub.sources_for(&region("b")),
            [region("a"), region("c")].into()
        );
        assert!(mesh.sources_for(&region("z")).is_empty());
    }

    #[test]
    fn invalid_rules_say_what_is_wrong() {
        let mut one_region = rule(Topology::FullMesh);
        one_region.regions = [region("a")].into();
        assert!(matches!(one_region.validate(), Err(RuleError::Regions(_))));
        let short_chain = rule(Topology::Chain(vec![region("a"), region("b")]));
        assert!(matches!(
            short_chain.validate(),
            Err(RuleError::Topology(_))
        ));
        let foreign_hub = rule(Topology::Hub(region("z")));
        assert!(matches!(
            foreign_hub.validate(),
            Err(RuleError::Topology(_))
        ));
        assert!(rule(Topology::FullMesh).validate().is_ok());
    }

    #[test]
    fn filters_select_by_header_and_key_prefix() {
        let filter = MirrorFilter {
            header: Some(("pii".into(), "false".into())),
            key_prefix: Some(Bytes::from_static(b"eu-")),
        };
        let mut record = Record::from_value("v");
        record.key = Some(Bytes::from_static(b"eu-42"));
        record.headers.push(meshgate_storage::Header {
            key: "pii".into(),
            value: Bytes::from_static(b"false"),
        });
        assert!(filter.passes(&record));
        record.key = Some(Bytes::from_static(b"us-42"));
        assert!(!filter.passes(&record));
        assert!(MirrorFilter::default().passes(&Record::from_value("x")));
    }
}
