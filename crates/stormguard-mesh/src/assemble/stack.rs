//! A caller's sidecar made explicit: a service `CALLER-sidecar` between the application and its
//! callees, for calls on which the application keeps its own timeout and retries.
//!
//! ## Why a service of its own
//! The application's client and the mesh's sidecar are two layers of retries and timeouts: an
//! application that tries 3 times through a sidecar that tries 3 times sends up to 9 attempts,
//! and an application timeout of 2 s over a sidecar that retries for 6 s gives up while the
//! sidecar still works. Written as two calls, one from the application to its sidecar with the
//! application's settings and one from the sidecar to the callee with the mesh's, the layers are
//! what `check` already judges (`retry-amplification`, `layered-retries`,
//! `timeout-inversion`) and what `sim` already runs, with no rule of their own. The sidecar
//! itself is nearly free: a tenth of a millisecond of its own work, and room for any load.

use super::calls::{comment, Planned};
use super::{Context, Table};

/// The sidecar's own work: a proxy adds well under a millisecond.
const LATENCY: &str = "{ p50 = \"100us\", p99 = \"1ms\" }";

/// Requests a sidecar works on at once: no limit worth modelling (the range's top).
const CONCURRENCY: u32 = 100_000;

/// One caller's sidecar: its name, instances, and one endpoint per callee.
pub(super) struct Sidecar {
    /// Its graph name (`web-sidecar`).
    pub name: String,
    caller: String,
    instances: u32,
    endpoints: Vec<(String, Planned)>,
}

impl Sidecar {
    /// The sidecar of `caller`, with as many instances; its name is `CALLER-sidecar`, or with a
    /// number if the graph has a service of that name (`taken`).
    pub(super) fn new(
        caller: &str,
        taken: &mut std::collections::BTreeSet<String>,
        instances: u32,
    ) -> Sidecar {
        let wanted = format!("{caller}-sidecar");
        let name = if taken.contains(&wanted) {
            (2..)
                .map(|n| format!("{wanted}-{n}"))
                .find(|n| !taken.contains(n))
                .expect("an unused name")
        } else {
            wanted
        };
        taken.insert(name.clone());
        Sidecar {
            name,
            caller: caller.to_string(),
            instances,
            endpoints: Vec::new(),
        }
    }

    /// Whether it has endpoint `name`.
    pub(super) fn has(&self, name: &str) -> bool {
        self.endpoint(name).is_some()
    }

    /// Its endpoint `name`'s call.
    pub(super) fn endpoint(&self, name: &str) -> Option<&Planned> {
        self.endpoints
            .iter()
            .find(|(n, _)| n == name)
            .map(|(_, call)| call)
    }

    /// Adds endpoint `name`, making `call`.
    pub(super) fn add(&mut self, name: String, call: Planned) {
        self.endpoints.push((name, call));
    }

    /// Appends the sidecar's tables to `out`.
    pub(super) fn write(self, cx: &mut Context<'_>, out: &mut String) {
        if !out.ends_with("\n\n") {
            out.push('\n');
        }
        out.push_str(&format!(
            "# The sidecar of {}, made explicit by the import: {} keeps its own timeout and \
             retries on its\n# calls below, which go through this sidecar; the sidecar's calls \
             carry the mesh's policy.\n",
            comment(&self.caller),
            comment(&self.caller)
        ));
        out.push_str(&format!(
            "[services.{}]\ninstances = {}\nconcurrency = {CONCURRENCY}\nlatency = {LATENCY}\n\n",
            self.name, self.instances
        ));
        for (endpoint, call) in &self.endpoints {
            out.push_str(&format!(
                "[services.{}.endpoints.{endpoint}]\n\n",
                self.name
            ));
            let table = Table::Call {
                service: self.name.clone(),
                endpoint: Some(endpoint.clone()),
                index: 0,
            };
            cx.push_call(
                out,
                &format!("services.{}.endpoints.{endpoint}.calls", self.name),
                table,
                call,
            );
        }
    }
}
