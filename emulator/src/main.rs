//! `kube-emulator`: serve the emulated API until killed, for the demo and manual checks.

#![forbid(unsafe_code)]

use std::net::SocketAddr;
use std::path::PathBuf;

fn main() {
    let mut listen: SocketAddr = "127.0.0.1:0".parse().expect("valid address");
    let mut kubeconfig: Option<PathBuf> = None;
    let mut args = std::env::args().skip(1);
    while let Some(arg) = args.next() {
        match (arg.as_str(), args.next()) {
            ("--listen", Some(addr)) => match addr.parse() {
                Ok(addr) => listen = addr,
                Err(_) => usage(&format!("--listen: not an address: {addr}")),
            },
            ("--write-kubeconfig", Some(path)) => kubeconfig = Some(PathBuf::from(path)),
            _ => usage(&format!("unexpected argument: {arg}")),
        }
    }
    let emulator = match kube_emulator::Emulator::start_on(listen) {
        Ok(emulator) => emulator,
        Err(error) => {
            eprintln!("kube-emulator: cannot listen on {listen}: {error}");
            std::process::exit(1);
        }
    };
    if let Some(path) = kubeconfig {
        if let Err(error) = emulator.write_kubeconfig(&path) {
            eprintln!("kube-emulator: cannot write {}: {error}", path.display());
            std::process::exit(1);
        }
    }
    println!("{}", emulator.url());
    loop {
        std::thread::park();
    }
}

fn usage(problem: &str) -> ! {
    eprintln!(
        "kube-emulator: {problem}\nusage: kube-emulator [--listen ADDR] [--write-kubeconfig PATH]"
    );
    std::process::exit(2);
}
