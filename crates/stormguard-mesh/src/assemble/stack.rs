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

use super::base::BaseCall;
use super::calls::{comment, method, Planned};
use super::placement::Chosen;
use super::{findings, Context, Table};
use crate::names::graph_name;

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

    /// Its endpoint `name`'s call.
    fn endpoint(&self, name: &str) -> Option<&Planned> {
        self.endpoints
            .iter()
            .find(|(n, _)| n == name)
            .map(|(_, call)| call)
    }

    /// Carries the base call `base`, on which the application makes up to `app` attempts,
    /// through this sidecar: the sidecar's endpoint for the callee (and the callee's endpoint)
    /// makes the call with `chosen`, the mesh's policy, and the base's round trip `rtt`. Adds
    /// the `mesh-retries-stacked` finding when both layers retry. Returns the sidecar's name and
    /// the endpoint the application's call now goes to.
    pub(super) fn carry(
        &mut self,
        cx: &mut Context<'_>,
        chosen: Chosen,
        base: &BaseCall<'_>,
        app: u32,
        rtt: Option<String>,
    ) -> (String, String) {
        let call = base.call;
        let mut name = call.to.clone();
        if let Some(callee_endpoint) = &call.endpoint {
            name.push('-');
            name.push_str(callee_endpoint);
        }
        let name = graph_name(&name);
        if self.endpoint(&name).is_none() {
            let edge = format!("{}/{name}", self.name);
            let chosen = cx.prepare(&edge, &call.to, chosen, base.method.as_deref());
            // The request keeps its method through the sidecar.
            let method = chosen
                .method
                .as_deref()
                .and_then(method)
                .map(|m| (m, chosen.origin.clone()))
                .or_else(|| base.method.clone().map(|m| (m, base.at.clone())));
            let planned = Planned {
                to: call.to.clone(),
                endpoint: call.endpoint.clone(),
                method,
                rtt,
                chosen,
            };
            self.endpoints.push((name.clone(), planned));
        }
        let mesh = &self.endpoint(&name).expect("added above").chosen;
        if let Some(finding) = findings::stacked(&base.caller, &call.to, app, mesh, base.at.clone())
        {
            cx.findings.push(finding);
        }
        (self.name.clone(), name)
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
