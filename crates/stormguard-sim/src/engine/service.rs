//! What happens on an instance: admission (fault, worker, queue or a fast 503), own work, the
//! answer, and the next request taken from the queue.

use super::events::{Answer, Event};
use super::slab::Key;
use super::state::{Caller, Job, Sim};
use rand::Rng;

impl Sim<'_> {
    /// An attempt reaches its instance.
    pub(crate) fn arrive(&mut self, key: Key) {
        let Some(attempt) = self.attempts.get_mut(key) else {
            return;
        };
        let (s, i, half_rtt) = (attempt.service, attempt.instance, attempt.half_rtt);
        let (endpoint, deadline) = (attempt.endpoint, attempt.deadline);
        let service = &self.model.services[s];
        self.tallies[s].attempts += 1;
        self.tallies[s].endpoint_attempts[endpoint] += 1;
        self.timeline.attempt(s);
        let condition = service.condition(i, self.now);
        if condition.down || condition.blackhole {
            attempt.callee_done = true;
            self.tallies[s].unreachable += 1;
            if condition.down {
                self.agenda
                    .schedule(self.now + half_rtt, Event::Response(key, Answer::Refused));
            } else {
                attempt.blackholed = true;
                if let Some(timeout) = attempt.connect_timeout {
                    let at = attempt.sent_at.saturating_add(timeout).max(self.now);
                    self.agenda.schedule(at, Event::ConnectTimeout(key));
                }
            }
            // A caller that gave up before it arrived is done with it too: freed (its events
            // find nothing, as they found it over).
            let a = *attempt;
            self.release(key, &a);
            return;
        }
        if condition.error_rate > 0.0 && self.work_rng.random::<f64>() < condition.error_rate {
            self.tallies[s].failed += 1;
            let answer = match condition.error_status {
                503 => Answer::Unavailable,
                status => Answer::Status(status),
            };
            self.answer_at_once(key, half_rtt, answer);
            return;
        }
        let k = service.first + i;
        let has_worker = self.instances[k].busy < service.concurrency;
        let full = |this: &Self| this.instances[k].queue.len() >= service.queue;
        if !has_worker && full(self) && service.queue_policy.expires() {
            self.shed_stale(s, k);
        }
        if !has_worker && full(self) {
            self.tallies[s].rejected += 1;
            self.answer_at_once(key, half_rtt, Answer::Unavailable);
            return;
        }
        self.loads[k] += 1;
        // The instance's condition, read on arrival, holds: the work starts now.
        let work = if has_worker {
            self.work(s, k, i, self.now, Some(condition.slowdown))
        } else {
            0
        };
        let job = key;
        if job.slot() >= self.jobs.len() {
            self.grow_jobs(job);
        }
        self.jobs[job.slot()] = Job {
            service: s,
            slot: k,
            endpoint,
            instance: i,
            deadline,
            queued_at: self.now,
            work,
            step: 0,
            outstanding: 0,
            failed: false,
        };
        if has_worker {
            self.agenda
                .schedule(self.now.saturating_add(work), Event::WorkDone(job));
        } else {
            let instance = &mut self.instances[k];
            if instance.queue.is_empty() {
                instance.nonempty_since = self.now;
            }
            let queue = &mut instance.queue;
            queue.push_back(job);
            let len = queue.len() as u64;
            let tally = &mut self.tallies[s];
            tally.max_queue = tally.max_queue.max(len);
            self.timeline.queued(s, len);
        }
    }

    /// Makes room for the job of attempt `key`, in a slot past any used before.
    #[cold]
    #[inline(never)]
    fn grow_jobs(&mut self, key: Key) {
        self.jobs.resize(key.slot() + 1, Job::default());
    }

    /// An answer without work: an injected error or a full queue (503).
    fn answer_at_once(&mut self, key: Key, half_rtt: u64, answer: Answer) {
        if let Some(attempt) = self.attempts.get_mut(key) {
            attempt.callee_done = true;
            // Freed if its caller gave up before it arrived, as `arrive` frees an unreachable
            // one; the answer then finds nothing, as it found the caller gone.
            let a = *attempt;
            self.release(key, &a);
        }
        self.agenda
            .schedule(self.now + half_rtt, Event::Response(key, answer));
    }

    /// A worker takes the queued request `key`: its own work begins (see [`work`](Self::work)).
    fn start(&mut self, key: Key) {
        let job = &self.jobs[key.slot()];
        let (s, k, i, queued_at) = (job.service, job.slot, job.instance, job.queued_at);
        let work = self.work(s, k, i, queued_at, None);
        self.jobs[key.slot()].work = work;
        self.agenda
            .schedule(self.now.saturating_add(work), Event::WorkDone(key));
    }

    /// A worker of instance `i` of service `s` (slot `k`) takes a request queued since
    /// `queued_at`: how long its own work takes, slowed down by the instance's faults
    /// (`slowdown`, when the caller has just read the instance's condition, else read here:
    /// the faults are scanned once per arrival, not twice). Apart from the job, so that an
    /// arrival that starts at once stores its job whole, once.
    #[inline(always)]
    fn work(&mut self, s: usize, k: usize, i: usize, queued_at: u64, slowdown: Option<f64>) -> u64 {
        let service = &self.model.services[s];
        let instance = &mut self.instances[k];
        let others = f64::from(instance.busy);
        instance.busy += 1;
        let slowdown = slowdown.unwrap_or_else(|| service.condition(i, self.now).slowdown);
        let own = service.work.sample_nanos(&mut self.work_rng);
        let contended = own + service.contention * others;
        let work = saturating_nanos(contended * slowdown);
        let tally = &mut self.tallies[s];
        tally.started += 1;
        tally.queue_wait_ns += u128::from(self.now - queued_at);
        tally.work_ns += u128::from(work);
        work
    }

    /// Own work is done: count it as wasted if someone above gave up, then make the calls.
    pub(crate) fn work_done(&mut self, key: Key) {
        let job = &self.jobs[key.slot()];
        let (s, work) = (job.service, job.work);
        if self.abandoned_above(key) {
            self.tallies[s].wasted_ns += u128::from(work);
        }
        self.run_calls(key);
    }

    /// Whether the attempt this job serves, or any attempt above it, was given up by its caller.
    ///
    /// The walk only passes attempts not abandoned, whose callers therefore still wait and are
    /// alive, so it never meets a freed slot.
    ///
    /// With no abandoned attempt stored at all, none can be above: no walk.
    fn abandoned_above(&self, mut job: Key) -> bool {
        if self.abandoned_stored == 0 {
            return false;
        }
        loop {
            let attempt = self.attempts.get(job).expect("a job's attempt is alive");
            if attempt.abandoned {
                return true;
            }
            match attempt.caller {
                Caller::User => return false,
                Caller::Run(_) => job = attempt.caller_job,
            }
        }
    }

    /// The request answers its caller and frees its worker for the next in the queue.
    pub(crate) fn respond(&mut self, key: Key, success: bool) {
        let job = self.jobs[key.slot()];
        let (s, k) = (job.service, job.slot);
        let tally = &mut self.tallies[s];
        if success {
            tally.succeeded += 1;
        } else {
            tally.failed += 1;
        }
        self.instances[k].busy -= 1;
        self.loads[k] -= 1;
        self.finish_for_callee(
            key,
            Some(if success {
                Answer::Ok
            } else {
                Answer::Unavailable
            }),
        );
        self.take_next(s, k);
    }

    /// The callee is done with an attempt; the answer travels back unless the caller left.
    #[inline(always)]
    fn finish_for_callee(&mut self, key: Key, answer: Option<Answer>) {
        let attempt = self
            .attempts
            .get_mut(key)
            .expect("a job's attempt is alive");
        attempt.callee_done = true;
        let (caller_done, half_rtt) = (attempt.caller_done, attempt.half_rtt);
        if caller_done {
            if attempt.abandoned {
                self.abandoned_stored -= 1;
            }
            self.attempts.remove(key);
        } else if let Some(answer) = answer {
            let at = self.now + half_rtt;
            self.agenda.schedule(at, Event::Response(key, answer));
        }
    }

    /// Starts the next queued request, in the order of the service's discipline, dropping those
    /// whose propagated deadline has passed (their caller has given up, so the work could only
    /// be wasted) and answering 503 to those that waited past the queue's limit.
    #[inline(always)]
    fn take_next(&mut self, s: usize, k: usize) {
        let instance = &self.instances[k];
        if instance.queue.is_empty() {
            return;
        }
        let take = self.model.services[s]
            .queue_policy
            .take(self.now, instance.nonempty_since);
        loop {
            let queue = &mut self.instances[k].queue;
            let popped = if take.newest_first {
                queue.pop_back()
            } else {
                queue.pop_front()
            };
            let Some(next) = popped else {
                return;
            };
            let job = &self.jobs[next.slot()];
            if job.deadline.is_some_and(|d| self.now >= d) {
                self.tallies[s].dropped += 1;
                self.loads[k] -= 1;
                self.finish_for_callee(next, None);
                continue;
            }
            if take.stale(self.now, job.queued_at) {
                self.drop_stale(s, k, next);
                continue;
            }
            self.start(next);
            return;
        }
    }

    /// An arrival found the queue full: the requests at its old end that waited past the
    /// queue's limit are answered 503 to make room, so that stale work is discarded before
    /// fresh work is refused.
    fn shed_stale(&mut self, s: usize, k: usize) {
        let instance = &self.instances[k];
        let take = self.model.services[s]
            .queue_policy
            .take(self.now, instance.nonempty_since);
        while let Some(&oldest) = self.instances[k].queue.front() {
            let queued_at = self.jobs[oldest.slot()].queued_at;
            if !take.stale(self.now, queued_at) {
                return;
            }
            self.instances[k].queue.pop_front();
            self.drop_stale(s, k, oldest);
        }
    }

    /// A queued request, out of the queue, waited too long: its caller gets a fast 503.
    fn drop_stale(&mut self, s: usize, k: usize, key: Key) {
        self.tallies[s].queue_dropped += 1;
        self.loads[k] -= 1;
        self.finish_for_callee(key, Some(Answer::Unavailable));
    }
}

/// `x` nanoseconds as a whole number, as `x as u64` converts it: saturating (a work time past
/// u64 nanoseconds, 585 years, is the longest there is), NaN as 0. Through `i64` where that
/// holds it exactly: one instruction on x86-64, where the conversion to `u64` is a dozen with
/// branches, on every request's work.
#[inline(always)]
fn saturating_nanos(x: f64) -> u64 {
    if (0.0..9.0e18).contains(&x) {
        x as i64 as u64
    } else {
        x as u64
    }
}

#[cfg(test)]
mod saturating_nanos_tests {
    use super::saturating_nanos;

    #[test]
    fn converts_as_a_cast_does() {
        for x in [
            0.0,
            -0.0,
            0.4,
            0.9999,
            1.5,
            123_456_789.987,
            8.999_999_999e18,
            9.0e18,
            1.8e19,
            1e300,
            f64::INFINITY,
            -1.0,
            f64::NEG_INFINITY,
            f64::NAN,
        ] {
            assert_eq!(saturating_nanos(x), x as u64, "{x}");
        }
    }
}
