//! What a scenario does to the system, as a report shows it: a window and a short legend per
//! fault and load step, so that a reader sees the cause beside the effect.

use stormguard_graph::model::{Fault, LoadStep};

use super::outcome::Trigger;

/// A fault's window, labelled with only what it changes: `db: slowdown x10, error_rate 0.2 on 1
/// of 3 instances`. `instances` is how many the service has.
pub(crate) fn fault(fault: &Fault, instances: usize) -> Trigger {
    let mut parts = Vec::new();
    if fault.slowdown != 1.0 {
        parts.push(format!("slowdown x{}", fault.slowdown));
    }
    if fault.error_rate > 0.0 {
        parts.push(format!("error_rate {}", fault.error_rate));
        if fault.error_status != 503 {
            parts.push(format!("status {}", fault.error_status));
        }
    }
    if fault.down {
        parts.push("down".to_string());
    }
    if fault.blackhole {
        parts.push("blackhole".to_string());
    }
    if parts.is_empty() {
        parts.push("no effect".to_string());
    }
    let mut label = format!("{}: {}", fault.service, parts.join(", "));
    if let Some(n) = fault
        .instances
        .map(|n| n as usize)
        .filter(|&n| n < instances)
    {
        label += &format!(" on {n} of {instances} instances");
    }
    Trigger {
        from: fault.from,
        to: fault.to,
        label,
        service: Some(fault.service.clone()),
    }
}

/// A load step's window: `load: 600/s`.
pub(crate) fn load(step: &LoadStep) -> Trigger {
    Trigger {
        from: step.from,
        to: step.to,
        label: format!("load: {}/s", step.rate),
        service: None,
    }
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use super::*;

    fn db(change: impl FnOnce(&mut Fault)) -> Fault {
        let mut fault = Fault {
            service: "db".into(),
            from: Duration::from_secs(30),
            to: Duration::from_secs(45),
            slowdown: 1.0,
            error_rate: 0.0,
            error_status: 503,
            down: false,
            blackhole: false,
            instances: None,
        };
        change(&mut fault);
        fault
    }

    #[test]
    fn a_label_names_only_what_the_fault_changes() {
        let all = db(|f| {
            f.slowdown = 10.0;
            f.error_rate = 0.2;
            f.down = true;
            f.blackhole = true;
            f.instances = Some(1);
        });
        let trigger = fault(&all, 3);
        assert_eq!(
            trigger.label,
            "db: slowdown x10, error_rate 0.2, down, blackhole on 1 of 3 instances"
        );
        assert_eq!(
            (trigger.from, trigger.to),
            (Duration::from_secs(30), Duration::from_secs(45))
        );
        assert_eq!(
            fault(&db(|f| f.slowdown = 2.5), 3).label,
            "db: slowdown x2.5"
        );
        let every = db(|f| {
            f.down = true;
            f.instances = Some(3);
        });
        assert_eq!(fault(&every, 3).label, "db: down");
        assert_eq!(fault(&db(|_| {}), 1).label, "db: no effect");
    }

    #[test]
    fn a_load_step_shows_its_rate() {
        let step = LoadStep {
            from: Duration::from_secs(20),
            to: Duration::from_secs(25),
            rate: 600.0,
        };
        assert_eq!(load(&step).label, "load: 600/s");
    }
}
