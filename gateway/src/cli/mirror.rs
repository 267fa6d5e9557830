//! `meshgate mirror add|list|remove|status`: mirroring rules and links.

use anyhow::Context;
use bytes::Bytes;
use meshgate_protocol::{MirrorFollowerStatus, MirrorLinkStatus, MirrorRuleSpec, OriginLag};

use super::connect::ConnectArgs;

/// Mirroring commands.
#[derive(Debug, clap::Subcommand)]
pub(crate) enum MirrorCommand {
    /// Add (or replace) a rule: these topics mirror between these regions.
    Add {
        /// The rule's name.
        name: String,
        /// Topic pattern; `*` matches any run of characters (`orders*`).
        #[arg(long)]
        topics: String,
        /// The regions, comma separated (at least two).
        #[arg(long, value_delimiter = ',', required = true)]
        regions: Vec<String>,
        /// `full-mesh` (default), `chain:a,b,c` or `hub:a`.
        #[arg(long, default_value = "full-mesh")]
        topology: String,
        /// Only records with this header (`key=value`) cross; the others
        /// travel as gap markers.
        #[arg(long, value_name = "KEY=VALUE", value_parser = crate::cli::produce::parse_header)]
        filter_header: Option<(String, String)>,
        /// Only records whose key starts with this prefix cross.
        #[arg(long, value_name = "PREFIX")]
        filter_key_prefix: Option<String>,
    },
    /// List the rules.
    List,
    /// Remove a rule (mirrored data stays).
    Remove {
        /// The rule's name.
        name: String,
    },
    /// This gateway's pull links: state, records pulled, lag per origin.
    Status {
        /// Print JSON instead of a table.
        #[arg(long)]
        json: bool,
    },
}

fn print_rules(rules: &[MirrorRuleSpec]) {
    println!(
        "{:<20} {:<24} {:<32} {:<24} FILTER",
        "RULE", "TOPICS", "REGIONS", "TOPOLOGY"
    );
    for rule in rules {
        let mut filter = Vec::new();
        if let Some((key, value)) = &rule.filter_header {
            filter.push(format!("{key}={value}"));
        }
        if let Some(prefix) = &rule.filter_key_prefix {
            filter.push(format!("key^{}", String::from_utf8_lossy(prefix)));
        }
        println!(
            "{:<20} {:<24} {:<32} {:<24} {}",
            rule.name,
            rule.topics,
            rule.regions.join(","),
            rule.topology,
            if filter.is_empty() {
                "-".to_string()
            } else {
                filter.join(" ")
            }
        );
    }
}

pub(crate) async fn run(connect: &ConnectArgs, command: MirrorCommand) -> anyhow::Result<()> {
    let client = connect.connect("meshgate-cli").await?;
    match command {
        MirrorCommand::Add {
            name,
            topics,
            regions,
            topology,
            filter_header,
            filter_key_prefix,
        } => {
            let rule = MirrorRuleSpec {
                name: name.clone(),
                topics,
                regions,
                topology,
                filter_header,
                filter_key_prefix: filter_key_prefix.map(Bytes::from),
            };
            let rules = client
                .add_mirror_rule(rule)
                .await
                .with_context(|| format!("cannot add rule {name}"))?;
            print_rules(&rules);
        }
        MirrorCommand::List => print_rules(
            &client
                .list_mirror_rules()
                .await
                .context("cannot list rules")?,
        ),
        MirrorCommand::Remove { name } => {
            let rules = client
                .remove_mirror_rule(&name)
                .await
                .with_context(|| format!("cannot remove rule {name}"))?;
            print_rules(&rules);
        }
        MirrorCommand::Status { json } => {
            let links = client
                .mirror_status()
                .await
                .context("cannot read mirror status")?;
            let followers = client
                .mirror_followers()
                .await
                .context("cannot read the regions pulling from this node")?;
            if json {
                let both = serde_json::json!({ "links": links, "followers": followers });
                println!("{}", serde_json::to_string_pretty(&both)?);
                return Ok(());
            }
            print_links(links);
            println!();
            print_followers(followers);
        }
    }
    Ok(())
}

fn lags(origins: &[OriginLag]) -> String {
    origins
        .iter()
        .map(|o| {
            let records = o.lag_records.map_or("?".to_string(), |r| r.to_string());
            format!("{}: {records} / {}", o.origin, o.lag_ms)
        })
        .collect::<Vec<_>>()
        .join(", ")
}

/// What this node pulls, from where, and how far behind it is.
fn print_links(links: Vec<MirrorLinkStatus>) {
    println!("PULLED HERE");
    println!(
        "{:<20} {:<20} {:>4} {:<10} {:<10} {:>10} {:>6}  LAG (origin: records / ms)",
        "RULE", "TOPIC", "PART", "SOURCE", "STATE", "PULLED", "GAPS"
    );
    for link in links {
        println!(
            "{:<20} {:<20} {:>4} {:<10} {:<10} {:>10} {:>6}  {}",
            link.rule,
            link.topic,
            link.partition,
            link.source_region,
            link.state,
            link.records_pulled,
            link.gap_records,
            lags(&link.origins)
        );
        if let Some(error) = link.error {
            println!("    {error}");
        }
    }
}

/// The regions pulling from this node and what they lack of what it holds.
fn print_followers(followers: Vec<MirrorFollowerStatus>) {
    println!("PULLED FROM HERE");
    println!(
        "{:<20} {:>4} {:<10} {:<12} {:>12}  BEHIND (origin: records / ms)",
        "TOPIC", "PART", "REGION", "STATE", "LAST ACK"
    );
    for follower in followers {
        println!(
            "{:<20} {:>4} {:<10} {:<12} {:>12}  {}",
            follower.topic,
            follower.partition,
            follower.region,
            if follower.connected {
                "connected"
            } else {
                "disconnected"
            },
            follower
                .last_ack_ms_ago
                .map_or("never".to_string(), |ms| format!("{ms} ms ago")),
            lags(&follower.origins)
        );
    }
}
