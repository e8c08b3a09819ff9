//! `kube-emulator`: serve the emulated API until killed, for the demo and manual checks.

#![forbid(unsafe_code)]

use std::net::SocketAddr;
use std::path::PathBuf;

fn main() {
    let mut listen: SocketAddr = "127.0.0.1:0".parse().expect("valid address");
    let mut kubeconfig: Option<PathBuf> = None;
    let mut tls_dir: Option<PathBuf> = None;
    let mut args = std::env::args().skip(1);
    while let Some(arg) = args.next() {
        match (arg.as_str(), args.next()) {
            ("--listen", Some(addr)) => match addr.parse() {
                Ok(addr) => listen = addr,
                Err(_) => usage(&format!("--listen: not an address: {addr}")),
            },
            ("--write-kubeconfig", Some(path)) => kubeconfig = Some(PathBuf::from(path)),
            ("--tls-dir", Some(path)) => tls_dir = Some(PathBuf::from(path)),
            _ => usage(&format!("unexpected argument: {arg}")),
        }
    }
    let emulator = match kube_emulator::Emulator::start_with(listen, tls_dir.as_deref()) {
        Ok(emulator) => emulator,
        Err(error) => {
            eprintln!("kube-emulator: cannot start on {listen}: {error}");
            std::process::exit(1);
        }
    };
    if let Some(path) = kubeconfig {
        if let Err(error) = emulator.write_kubeconfig(&path) {
            eprintln!("kube-emulator: cannot write {}: {error}", path.display());
            std::process::exit(1);
        }
    }
    // The plain URL first (scripts read one line); the HTTPS one, when asked for, second.
    println!("{}", emulator.url());
    if let Some(addr) = emulator.https_addr() {
        println!("https://{addr}");
    }
    loop {
        std::thread::park();
    }
}

fn usage(problem: &str) -> ! {
    eprintln!(
        "kube-emulator: {problem}\nusage: kube-emulator [--listen ADDR] [--write-kubeconfig PATH] [--tls-dir DIR]\n\
         --tls-dir DIR: also serve HTTPS (a second port, printed second) with a CA made at\n\
         start-up, written to DIR/ca.crt (serving pair: DIR/tls.crt, DIR/tls.key)"
    );
    std::process::exit(2);
}
