//! `meshgate certs`: the cluster CA and node certificates.
//!
//! - `meshgate certs ca --dir DIR`: a new cluster CA (`ca.pem`, `ca.key`),
//!   never overwriting another one.
//! - `meshgate certs node --ca-dir DIR --node-id ID [--san HOST]... --out DIR`:
//!   a node certificate (`node.pem`, `node.key`) issued by that CA, for the
//!   `[tls]` section of a gateway's configuration.
//! - `meshgate certs import --from DIR --data-dir DATA`: makes a dev node
//!   (no `[tls]` configured) use that CA, so several dev nodes trust each
//!   other; `meshgate certs export --data-dir DATA --to DIR` is the reverse.

use std::path::PathBuf;

use anyhow::Context;
use meshgate_federation::transport::{ClusterCa, NodeName};

/// Certificate commands.
#[derive(Debug, clap::Subcommand)]
pub(crate) enum CertsCommand {
    /// Create a cluster CA in DIR (refuses to replace a different one).
    Ca {
        /// Where to write ca.pem and ca.key.
        #[arg(long)]
        dir: PathBuf,
    },
    /// Issue a node certificate from the CA in --ca-dir.
    Node {
        /// The directory holding ca.pem and ca.key.
        #[arg(long)]
        ca_dir: PathBuf,
        /// The node id (a DNS label) the certificate names.
        #[arg(long)]
        node_id: String,
        /// Extra names or IPs the certificate holds (repeatable).
        #[arg(long = "san")]
        sans: Vec<String>,
        /// Where to write node.pem and node.key.
        #[arg(long)]
        out: PathBuf,
    },
    /// Make the dev node in --data-dir use the CA in --from.
    Import {
        /// The directory holding ca.pem and ca.key.
        #[arg(long)]
        from: PathBuf,
        /// The dev node's data directory.
        #[arg(long, default_value = "./data")]
        data_dir: PathBuf,
    },
    /// Copy the dev node's CA out of --data-dir, for other dev nodes to import.
    Export {
        /// The dev node's data directory.
        #[arg(long, default_value = "./data")]
        data_dir: PathBuf,
        /// Where to write ca.pem and ca.key.
        #[arg(long)]
        to: PathBuf,
    },
}

pub(crate) fn run(command: CertsCommand) -> anyhow::Result<()> {
    match command {
        CertsCommand::Ca { dir } => {
            let ca = ClusterCa::generate().context("cannot generate a CA")?;
            ca.export(&dir)
                .with_context(|| format!("cannot write the CA into {}", dir.display()))?;
            println!("cluster CA in {} (keep ca.key secret)", dir.display());
        }
        CertsCommand::Node {
            ca_dir,
            node_id,
            sans,
            out,
        } => {
            let ca = ClusterCa::load(&ca_dir)
                .with_context(|| format!("no CA in {}", ca_dir.display()))?;
            let name = NodeName::parse(&node_id).context("invalid --node-id")?;
            let cert = ca
                .issue_node_cert(&name, &sans)
                .context("cannot issue the certificate")?;
            cert.save(&out)
                .with_context(|| format!("cannot write into {}", out.display()))?;
            println!("certificate for {node_id} in {}", out.display());
        }
        CertsCommand::Import { from, data_dir } => {
            let tls = data_dir.join("tls");
            ClusterCa::import(&from, &tls)
                .with_context(|| format!("cannot import into {}", tls.display()))?;
            println!(
                "{} now uses the CA from {}",
                data_dir.display(),
                from.display()
            );
        }
        CertsCommand::Export { data_dir, to } => {
            let tls = data_dir.join("tls");
            let ca =
                ClusterCa::load(&tls).with_context(|| format!("no CA in {}", tls.display()))?;
            ca.export(&to)
                .with_context(|| format!("cannot export into {}", to.display()))?;
            println!("CA of {} exported to {}", data_dir.display(), to.display());
        }
    }
    Ok(())
}
