//! The `meshgate` command.

fn main() {
    eprintln!("meshgate: the gateway is not built yet");
    std::process::exit(2);
}
