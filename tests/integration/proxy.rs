//! A fault-injecting HTTP proxy between secops and OpenBao: the N-th request (counted across
//! connections) can be reset, stalled past the client's timeout, answered with an error
//! status, carried out with its answer dropped, or held until the test releases it.

use std::collections::HashMap;
use std::io::{BufRead as _, BufReader, Read as _, Write as _};
use std::net::{TcpListener, TcpStream};
use std::sync::{Arc, Mutex};
use std::time::Duration;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ProxyFault {
    /// Close the connection without answering; nothing reached Vault.
    Reset,
    /// Answer nothing until the client gives up.
    Stall,
    /// Answer with this status (503 = sealed/standby, 429, 500).
    Status(u16),
    /// Forward to Vault, then close without answering: the write happened unseen.
    DropAfter,
    /// Hold the request until [`FaultProxy::release`], then carry it out: a window in which
    /// the test changes the world under a run that is past its reads.
    Hold,
}

#[derive(Default)]
struct Plan {
    served: usize,
    faults: HashMap<usize, ProxyFault>,
    /// Fail the request `offset` after the first one whose head contains this text.
    after: Option<(String, usize, ProxyFault)>,
    /// The request line of every request forwarded to Vault.
    forwarded: Vec<String>,
    /// A request is being held ([`ProxyFault::Hold`]) until `released`.
    holding: bool,
    released: bool,
}

pub struct FaultProxy {
    pub addr: String,
    plan: Arc<Mutex<Plan>>,
}

impl FaultProxy {
    pub fn start(upstream: &str) -> FaultProxy {
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let addr = format!("http://{}", listener.local_addr().unwrap());
        let upstream = upstream.trim_start_matches("http://").to_string();
        let plan = Arc::new(Mutex::new(Plan::default()));
        let shared = plan.clone();
        std::thread::spawn(move || {
            for client in listener.incoming().flatten() {
                let (plan, upstream) = (shared.clone(), upstream.clone());
                std::thread::spawn(move || serve(client, &upstream, &plan));
            }
        });
        FaultProxy { addr, plan }
    }

    /// Starts counting afresh and fails the request at `position` (0-based).
    pub fn arm(&self, position: usize, fault: ProxyFault) {
        let mut plan = self.plan.lock().unwrap();
        plan.served = 0;
        plan.faults = HashMap::from([(position, fault)]);
        plan.after = None;
        (plan.holding, plan.released) = (false, false);
    }

    /// Fails the request right after the first one whose request line and headers contain
    /// `needle` (e.g. `POST /v1/secret/data/team/db `): a crash just after that request.
    pub fn arm_after(&self, needle: &str, fault: ProxyFault) {
        self.arm_at(needle, 1, fault);
    }

    /// Fails the request `offset` requests after the first one containing `needle` (0: that
    /// request itself).
    pub fn arm_at(&self, needle: &str, offset: usize, fault: ProxyFault) {
        let mut plan = self.plan.lock().unwrap();
        plan.served = 0;
        plan.faults.clear();
        plan.after = Some((needle.to_string(), offset, fault));
        (plan.holding, plan.released) = (false, false);
    }

    /// How many requests whose request line contains `needle` reached Vault.
    pub fn forwarded(&self, needle: &str) -> usize {
        let plan = self.plan.lock().unwrap();
        plan.forwarded.iter().filter(|l| l.contains(needle)).count()
    }

    pub fn served(&self) -> usize {
        self.plan.lock().unwrap().served
    }

    /// Waits until a request is held by [`ProxyFault::Hold`].
    pub fn wait_until_holding(&self) {
        let deadline = std::time::Instant::now() + Duration::from_secs(20);
        while !self.plan.lock().unwrap().holding {
            assert!(
                std::time::Instant::now() < deadline,
                "no request reached the hold"
            );
            std::thread::sleep(Duration::from_millis(10));
        }
    }

    /// Lets the held request go on to Vault.
    pub fn release(&self) {
        self.plan.lock().unwrap().released = true;
    }
}

/// A held request is let go with its proxy, so a test that fails mid-hold does not leave a
/// thread polling forever.
impl Drop for FaultProxy {
    fn drop(&mut self) {
        self.release();
    }
}

/// Reads one request; `None` at end of stream.
fn read_request(reader: &mut BufReader<TcpStream>) -> Option<Vec<u8>> {
    let mut head = Vec::new();
    let mut length = 0usize;
    loop {
        let mut line = String::new();
        if reader.read_line(&mut line).ok()? == 0 {
            return None;
        }
        if line == "\r\n" {
            break;
        }
        let lower = line.to_ascii_lowercase();
        if let Some(value) = lower.strip_prefix("content-length:") {
            length = value.trim().parse().unwrap_or(0);
        }
        if !lower.starts_with("connection:") {
            head.extend_from_slice(line.as_bytes());
        }
    }
    // One request per upstream connection keeps the count exact.
    head.extend_from_slice(b"Connection: close\r\n\r\n");
    let mut body = vec![0; length];
    reader.read_exact(&mut body).ok()?;
    head.extend_from_slice(&body);
    Some(head)
}

/// Serves one request per connection: each is forwarded with `Connection: close`, so the
/// client reconnects for the next one and the count stays exact.
fn serve(client: TcpStream, upstream: &str, plan: &Mutex<Plan>) {
    let mut writer = client.try_clone().unwrap();
    let mut reader = BufReader::new(client);
    let Some(request) = read_request(&mut reader) else {
        return;
    };
    let fault = {
        let mut plan = plan.lock().unwrap();
        let position = plan.served;
        plan.served += 1;
        let head = String::from_utf8_lossy(&request[..request.len().min(512)]).to_string();
        if let Some((needle, offset, fault)) = plan.after.take() {
            if head.contains(&needle) {
                plan.faults.insert(position + offset, fault);
            } else {
                plan.after = Some((needle, offset, fault));
            }
        }
        let fault = plan.faults.remove(&position);
        if matches!(
            fault,
            None | Some(ProxyFault::DropAfter) | Some(ProxyFault::Hold)
        ) {
            let line = head.lines().next().unwrap_or_default().to_string();
            plan.forwarded.push(line);
        }
        fault
    };
    match fault {
        // Dropping the connection unanswered is the reset.
        Some(ProxyFault::Reset) => {}
        Some(ProxyFault::Stall) => std::thread::sleep(Duration::from_secs(3)),
        Some(ProxyFault::Status(code)) => {
            let body = r#"{"errors":["injected fault"]}"#;
            let _ = write!(writer, "HTTP/1.1 {code} Injected\r\nContent-Type: application/json\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}", body.len());
        }
        None | Some(ProxyFault::DropAfter) | Some(ProxyFault::Hold) => {
            if fault == Some(ProxyFault::Hold) {
                plan.lock().unwrap().holding = true;
                while !plan.lock().unwrap().released {
                    std::thread::sleep(Duration::from_millis(10));
                }
            }
            let Ok(mut upstream) = TcpStream::connect(upstream) else {
                return;
            };
            let _ = upstream.write_all(&request);
            let mut response = Vec::new();
            let _ = upstream.read_to_end(&mut response);
            if fault != Some(ProxyFault::DropAfter) {
                let _ = writer.write_all(&response);
            }
        }
    }
}
