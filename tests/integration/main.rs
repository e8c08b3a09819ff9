//! One integration-test binary: every test runs the real `secops` executable against a real
//! OpenBao dev server and the Kubernetes API emulator.

mod audit;
mod broken_state;
mod cli;
mod clusters;
mod consumers;
mod demo;
mod emulator;
mod engine;
mod faults;
mod foundation;
mod gitops;
mod handover;
mod hostile;
mod kubectl;
mod ownership;
mod proxy;
mod push;
mod races;
mod readopt;
mod rotate;
mod status;
mod support;
mod tls;
mod vault_setup;
