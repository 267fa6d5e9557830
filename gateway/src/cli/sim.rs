//! `meshgate sim`: runs the `meshgate-sim` program (the simulation crate's
//! binary, built beside `meshgate` by `cargo build --workspace`) with the
//! same arguments. The simulation links the whole gateway, so it lives in
//! its own crate (sim/) and `meshgate` hands over to it, as git and cargo
//! do with their subcommands.

use std::ffi::OsString;
use std::path::PathBuf;
use std::process::ExitCode;

use anyhow::Context;

/// Arguments passed on to `meshgate-sim` (`list`, `run ...`, `--help`).
#[derive(Debug, clap::Args)]
pub(crate) struct SimArgs {
    #[arg(trailing_var_arg = true, allow_hyphen_values = true)]
    args: Vec<OsString>,
}

/// The `meshgate-sim` program: beside this executable, else on `PATH`.
fn program() -> Option<PathBuf> {
    let name = format!("meshgate-sim{}", std::env::consts::EXE_SUFFIX);
    let beside = std::env::current_exe()
        .ok()
        .and_then(|exe| exe.parent().map(|dir| dir.join(&name)));
    beside.filter(|path| path.is_file()).or_else(|| {
        std::env::var_os("PATH").and_then(|paths| {
            std::env::split_paths(&paths)
                .map(|dir| dir.join(&name))
                .find(|path| path.is_file())
        })
    })
}

/// Runs `meshgate-sim` and exits as it does.
pub(crate) fn run(args: SimArgs) -> anyhow::Result<ExitCode> {
    let Some(program) = program() else {
        anyhow::bail!(
            "meshgate sim needs the meshgate-sim program beside meshgate or on PATH; \
             build it with `cargo build --release -p meshgate-sim` \
             (or run `cargo run --release -p meshgate-sim -- {}`)",
            args.args
                .iter()
                .map(|a| a.to_string_lossy().into_owned())
                .collect::<Vec<_>>()
                .join(" ")
        );
    };
    let status = std::process::Command::new(&program)
        .args(&args.args)
        .status()
        .with_context(|| format!("cannot run {}", program.display()))?;
    Ok(match status.code() {
        Some(0) => ExitCode::SUCCESS,
        Some(code) => ExitCode::from(u8::try_from(code).unwrap_or(1)),
        None => ExitCode::FAILURE,
    })
}
