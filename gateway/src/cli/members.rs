//! `meshgate members`: the cluster's membership as a gateway sees it.

use anyhow::Context;

use super::connect::ConnectArgs;

/// Flags of `meshgate members`.
#[derive(Debug, clap::Args)]
pub(crate) struct MembersArgs {
    /// Print JSON instead of a table.
    #[arg(long)]
    json: bool,
}

pub(crate) async fn run(connect: &ConnectArgs, args: MembersArgs) -> anyhow::Result<()> {
    let client = connect.connect("meshgate-cli").await?;
    let members = client
        .members()
        .await
        .context("cannot read the membership")?;
    if args.json {
        println!("{}", serde_json::to_string_pretty(&members)?);
        return Ok(());
    }
    println!(
        "{:<22} {:<12} {:<8} {:>5} {:<22} {:<22} {:>11}",
        "NODE", "REGION", "STATE", "INC", "CLIENTS", "PEERS", "LAST HEARD"
    );
    for member in members {
        let heard = match (member.local, member.last_heard_ms_ago) {
            (true, _) => "(this node)".to_string(),
            (false, Some(ms)) => format!("{ms} ms ago"),
            (false, None) => "-".to_string(),
        };
        println!(
            "{:<22} {:<12} {:<8} {:>5} {:<22} {:<22} {:>11}",
            member.node_id,
            member.region,
            member.state,
            member.incarnation,
            member.client_address,
            member.peer_address,
            heard
        );
    }
    Ok(())
}
