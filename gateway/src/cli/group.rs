//! `meshgate group list|describe`.

use anyhow::Context;

use super::connect::ConnectArgs;

/// Consumer group inspection.
#[derive(Debug, clap::Subcommand)]
pub(crate) enum GroupCommand {
    /// List consumer groups.
    List,
    /// Show a group's members, assignments, committed offsets and lag.
    Describe {
        /// The group.
        group: String,
    },
}

pub(crate) async fn run(connect: &ConnectArgs, command: GroupCommand) -> anyhow::Result<()> {
    let client = connect.connect("meshgate-cli").await?;
    match command {
        GroupCommand::List => {
            let groups = client.list_groups().await.context("cannot list groups")?;
            println!("{:<40} {:<22} {:>8}  PROTOCOL", "GROUP", "STATE", "MEMBERS");
            for group in groups {
                println!(
                    "{:<40} {:<22} {:>8}  {}",
                    group.group,
                    group.state,
                    group.members,
                    group.protocol.as_deref().unwrap_or("-")
                );
            }
        }
        GroupCommand::Describe { group } => {
            let description = client
                .describe_group(&group)
                .await
                .with_context(|| format!("cannot describe group {group}"))?;
            println!("group       {}", description.group);
            println!("state       {}", description.state);
            println!("generation  {}", description.generation);
            println!(
                "protocol    {}",
                description.protocol.as_deref().unwrap_or("-")
            );
            println!();
            println!("{:<40} {:<24} ASSIGNMENT", "MEMBER", "CLIENT");
            for member in &description.members {
                let assignment: Vec<String> = member
                    .assignment
                    .iter()
                    .map(|tp| {
                        let partitions: Vec<String> =
                            tp.partitions.iter().map(u32::to_string).collect();
                        format!("{}[{}]", tp.topic, partitions.join(","))
                    })
                    .collect();
                println!(
                    "{:<40} {:<24} {}",
                    member.member_id,
                    member.client_id,
                    assignment.join(" ")
                );
            }
            println!();
            println!(
                "{:<40} {:>9} {:>14} {:>10}",
                "TOPIC", "PARTITION", "OFFSET", "LAG"
            );
            for offset in &description.offsets {
                let show =
                    |value: Option<u64>| value.map_or_else(|| "-".to_string(), |v| v.to_string());
                println!(
                    "{:<40} {:>9} {:>14} {:>10}",
                    offset.topic,
                    offset.partition,
                    show(offset.offset),
                    show(offset.lag)
                );
            }
        }
    }
    Ok(())
}
