//! Linkerd's precedence, applied once every document is read.

use crate::inventory::{Host, Inventory, Policy, Route, System};
use crate::linkerd::annotations;
use crate::names::service_of;
use crate::source::Origin;

/// Writes the Linkerd policies the readers left pending ([`super::Pending`]), as Linkerd's
/// control plane decides them (linkerd2 `policy-controller/grpc/src/outbound/http.rs`,
/// linkerd2-proxy `should_override_policy`):
///
/// 1. A Service with a `ServiceProfile` that has routes (or `dstOverrides`): the proxy takes the
///    profile's routes, and the Service's `HTTPRoute`s, `GRPCRoute`s and annotations change
///    nothing; they are listed as replaced. (Linkerd's docs say any profile; the proxy switches
///    only for one with routes or overrides, and a profile with neither produces no route here.)
/// 2. A route on a Service takes its own retry annotations if it has any, else its Service's;
///    its own timeout annotations if it has any, else its Service's (each family as a whole);
///    with neither, Linkerd's: no retry, no timeout. A Gateway API route on a Service that runs
///    in Linkerd (it has annotations or a profile, or its namespace is meshed) is Linkerd's:
///    Linkerd reads no `rules[].retry` or `rules[].timeouts` of a `gateway.networking.k8s.io`
///    route, so those are listed as not applied.
/// 3. A Service with annotations and no route of its own: Linkerd's default route for it, with
///    the annotations.
///
/// Resolving twice changes nothing: what was pending is applied once and cleared.
pub fn resolve(inv: &mut Inventory) {
    let pending = std::mem::take(&mut inv.linkerd);
    let profiles: Vec<((String, Option<String>), String)> = inv
        .routes
        .iter()
        .filter(|r| r.resource.kind == "ServiceProfile")
        .map(|r| {
            let at = format!("{} at {}", r.resource.name, r.origin.short());
            (service_of(&r.host), at)
        })
        .collect();
    let profile_of = |host: &Host| {
        let key = service_of(host);
        profiles
            .iter()
            .find(|(k, _)| *k == key)
            .map(|(_, o)| o.clone())
    };
    let meshed: Vec<Option<String>> = inv
        .meshes
        .iter()
        .filter(|m| m.system == System::Linkerd)
        .map(|m| m.namespace.clone())
        .collect();
    let service_of_host = |host: &Host| {
        let key = service_of(host);
        pending.services.iter().find(|s| service_of(&s.host) == key)
    };
    for route in &pending.routes {
        let Some(index) = inv
            .routes
            .iter()
            .position(|r| r.resource == route.resource && r.host == route.host)
        else {
            continue;
        };
        let service = service_of_host(&route.host);
        let profile = profile_of(&route.host);
        let namespace = service_of(&route.host).1;
        let linkerd = route.linkerd
            || service.is_some()
            || profile.is_some()
            || meshed.iter().any(|m| m.is_none() || *m == namespace);
        if !linkerd {
            continue;
        }
        if let Some(profile) = profile {
            let removed = inv.routes.remove(index);
            inv.unread(
                removed.origin,
                format!("{} {}", removed.resource.kind, removed.resource.name),
                format!(
                    "replaced by the ServiceProfile {profile}: Linkerd's proxy routes by a \
                     profile with routes, not by the Service's HTTPRoutes, GRPCRoutes or \
                     annotations"
                ),
            );
            continue;
        }
        let mut policy = std::mem::take(&mut inv.routes[index].policy);
        if !route.linkerd {
            inv.routes[index].system = System::Linkerd;
            for setting in std::mem::take(&mut policy.settings) {
                inv.unread(
                    setting.origin,
                    format!("{} = {}", setting.key, setting.value),
                    "not applied: Linkerd reads no rules[].retry or rules[].timeouts of a \
                     gateway.networking.k8s.io route (write retry.linkerd.io and \
                     timeout.linkerd.io annotations)",
                );
            }
        }
        let own = &route.annotations;
        let retry = own
            .retry_for(route.grpc)
            .or_else(|| service.and_then(|s| s.annotations.retry_for(route.grpc)));
        let timeouts = if own.timeouts.is_set() {
            Some(&own.timeouts)
        } else {
            service
                .map(|s| &s.annotations.timeouts)
                .filter(|t| t.is_set())
        };
        annotations::apply(&mut policy, retry, timeouts, route.grpc, inv);
        inv.routes[index].policy = policy;
    }
    for service in &pending.services {
        let origin = service
            .annotations
            .origin
            .clone()
            .unwrap_or(Origin::Default("Linkerd"));
        let what = format!("Service {} annotations", service.resource.name);
        if let Some(profile) = profile_of(&service.host) {
            inv.unread(
                origin,
                what,
                format!(
                    "not applied: the ServiceProfile {profile} replaces retry and timeout \
                     annotations"
                ),
            );
            continue;
        }
        let key = service_of(&service.host);
        let routes_of = |grpc: bool| {
            inv.routes.iter().any(|r| {
                r.system == System::Linkerd
                    && r.caller.is_none()
                    && service_of(&r.host) == key
                    && r.resource.kind == if grpc { "GRPCRoute" } else { "HTTPRoute" }
            })
        };
        let (http_routes, grpc_routes) = (routes_of(false), routes_of(true));
        if service.annotations.retry.grpc.is_some() && !grpc_routes {
            inv.unread(
                origin.clone(),
                "retry.linkerd.io/grpc",
                "not applied: Linkerd reads it for the Service's GRPCRoutes, and the Service \
                 has none (its default route retries by HTTP status)",
            );
        }
        if http_routes || grpc_routes {
            continue;
        }
        let mut policy = Policy::default();
        let timeouts = Some(&service.annotations.timeouts).filter(|t| t.is_set());
        annotations::apply(
            &mut policy,
            service.annotations.retry_for(false),
            timeouts,
            false,
            inv,
        );
        inv.routes.push(Route {
            system: System::Linkerd,
            host: service.host.clone(),
            name: None,
            caller: None,
            method: None,
            backends: Vec::new(),
            policy,
            origin,
            resource: service.resource.clone(),
        });
    }
}
