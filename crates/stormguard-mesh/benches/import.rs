//! How long `stormguard import` takes on a large cluster's manifests: 1,000 services, each a
//! file with its `Deployment`, `Service` and an Istio `VirtualService` of two routes (3,000
//! documents, 1,000 VirtualServices), as `kubectl get -o yaml` per namespace would give them.
//!
//! The issue asks for 1,000 VirtualServices and 1,000 Deployments imported in under a second.
//! The phases are measured apart (reading and parsing the files, the readers, the assembler)
//! and together, so that a slow one shows by name. The files are generated from a fixed
//! pattern into a temporary folder, the same on every run, and removed at the end.
//!
//!     cargo bench -p stormguard-mesh --bench import

use std::fmt::Write as _;
use std::hint::black_box;
use std::path::PathBuf;

use criterion::{criterion_group, criterion_main, Criterion};
use stormguard_mesh::{assemble, inventory, read_paths, Options};

const SERVICES: usize = 1_000;

/// A temporary folder removed when dropped, even when a benchmark panics.
struct Folder(PathBuf);

impl Drop for Folder {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

/// Service `i`'s manifests: a Deployment of 1 to 5 replicas, its Service, and a VirtualService
/// with a route for writes (no retries) and a default route (a timeout, retries, a per-try
/// timeout), the shape of Istio's own task examples.
fn manifests(i: usize) -> String {
    let name = format!("svc-{i:04}");
    let namespace = format!("team-{}", i % 20);
    let replicas = 1 + i % 5;
    let next = format!("svc-{:04}", (i + 1) % SERVICES);
    let mut out = String::new();
    let _ = write!(
        out,
        "apiVersion: apps/v1
kind: Deployment
metadata:
  name: {name}
  namespace: {namespace}
  labels:
    app: {name}
spec:
  replicas: {replicas}
  selector:
    matchLabels:
      app: {name}
  template:
    metadata:
      labels:
        app: {name}
        version: v1
      annotations:
        sidecar.istio.io/inject: \"true\"
    spec:
      containers:
        - name: {name}
          image: registry.example.com/{name}:1.4.2
          ports:
            - containerPort: 8080
          env:
            - name: UPSTREAM
              value: http://{next}.{namespace}:8080
          resources:
            requests: {{ cpu: 100m, memory: 128Mi }}
---
apiVersion: v1
kind: Service
metadata:
  name: {name}
  namespace: {namespace}
spec:
  selector:
    app: {name}
  ports:
    - name: http
      port: 8080
      targetPort: 8080
---
apiVersion: networking.istio.io/v1
kind: VirtualService
metadata:
  name: {name}
  namespace: {namespace}
spec:
  hosts:
    - {name}
  http:
    - name: writes
      match:
        - method:
            exact: POST
      route:
        - destination:
            host: {name}
            subset: v1
      timeout: {write_timeout}ms
      retries:
        attempts: 0
    - name: default
      route:
        - destination:
            host: {name}
            subset: v1
          weight: 90
        - destination:
            host: {name}
            subset: v2
          weight: 10
      timeout: {timeout}s
      retries:
        attempts: {attempts}
        perTryTimeout: {per_try}ms
        retryOn: 5xx,connect-failure,refused-stream
",
        write_timeout = 500 + (i % 7) * 100,
        timeout = 1 + i % 4,
        attempts = 1 + i % 3,
        per_try = 200 + (i % 9) * 50,
    );
    out
}

fn import(c: &mut Criterion) {
    let folder = Folder(
        std::env::temp_dir().join(format!("stormguard-import-bench-{}", std::process::id())),
    );
    std::fs::create_dir_all(&folder.0).expect("a temporary folder");
    let mut bytes = 0;
    for i in 0..SERVICES {
        let text = manifests(i);
        bytes += text.len();
        std::fs::write(folder.0.join(format!("svc-{i:04}.yaml")), text).expect("writable");
    }
    let paths = vec![folder.0.clone()];
    let documents = read_paths(&paths).expect("the generated manifests parse");
    assert_eq!(documents.len(), 3 * SERVICES);
    let inv = inventory(&documents).expect("the generated manifests are valid");
    let options = Options {
        base: None,
        inputs: vec![folder.0.display().to_string()],
    };
    let imported = assemble(&inv, &options).expect("the inventory assembles");
    // Said so that a figure is read against the work done: readers or an assembler that do
    // nothing yet make a fast import of nothing.
    eprintln!(
        "{SERVICES} files, {} documents, {} KiB of YAML: {} routes, {} workloads, {} destination \
         policies, {} not read; the graph: {} lines",
        documents.len(),
        bytes >> 10,
        inv.routes.len(),
        inv.workloads.len(),
        inv.destinations.len(),
        inv.unread.len(),
        imported.toml.lines().count()
    );

    let mut group = c.benchmark_group("import 1k VirtualServices + 1k Deployments");
    group.sample_size(10);
    group.bench_function("read_paths", |b| {
        b.iter(|| read_paths(black_box(&paths)).expect("parsed above"))
    });
    group.bench_function("inventory", |b| {
        b.iter(|| inventory(black_box(&documents)).expect("read above"))
    });
    group.bench_function("assemble", |b| {
        b.iter(|| assemble(black_box(&inv), &options).expect("assembled above"))
    });
    group.bench_function("total (target < 1 s)", |b| {
        b.iter(|| {
            let documents = read_paths(black_box(&paths)).expect("parsed above");
            let inv = inventory(&documents).expect("read above");
            assemble(&inv, &options).expect("assembled above")
        })
    });
    group.finish();
}

criterion_group!(benches, import);
criterion_main!(benches);
