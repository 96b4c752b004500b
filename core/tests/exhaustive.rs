//! The exhaustive check: for an old bundle at scale N = 1..=5 and at most two faults per path
//! (refusals, crashes, deadlines firing early, an operator's abort) and one restart of lockstep (resuming from the
//! record, the scale request in flight lost or applied), every interleaving of the fake
//! cluster's events, explored breadth-first with a visited set. Time is abstracted to "a
//! deadline fires".
//! The oracle (`lockstep_core::sim::check`, `check_end`) holds in every reachable state; every
//! path ends, in success or failure, within a bound; no state is stuck.

use std::collections::{HashMap, VecDeque};
use std::hash::{BuildHasher, RandomState};
use std::time::Instant;

use lockstep_core::deployer::{Cause, Outcome, Policy, Rollback};
use lockstep_core::sim::fixture::{NEW, OLDER, cluster, request};
use lockstep_core::sim::{Step, World};
use lockstep_core::time::Duration;

const MAX_FAULTS: u8 = 2;
const MAX_RESTARTS: u8 = 1;
/// No path may be longer: every deployment ends within this many steps.
const MAX_DEPTH: u32 = 200;

fn world(n: u32, policy: Policy, version: u8) -> World<1> {
    let mut world = World::new(policy, cluster(n, true));
    world.notify(request(1, version)).unwrap();
    world
}

type Key = (u64, u64);

struct Explored {
    states: usize,
    ends: usize,
    successes: usize,
    rolled_back: usize,
    other_failures: usize,
    /// Failures that refused a downgrade.
    downgrades: usize,
    longest: u32,
}

/// Breadth-first over every interleaving; panics with the path to the first broken promise.
fn explore(n: u32, policy: Policy, version: u8) -> Explored {
    let hashers = (RandomState::new(), RandomState::new());
    let key = |w: &World<1>, budget: (u8, u8)| -> Key {
        (
            hashers.0.hash_one((w, budget)),
            hashers.1.hash_one((w, budget)),
        )
    };
    let start = world(n, policy, version);
    let start_key = key(&start, (0, 0));
    // Each visited state's parent and the step that reached it, to print a counterexample.
    let mut parent: HashMap<Key, Option<(Key, Step)>> = HashMap::new();
    parent.insert(start_key, None);
    let mut queue = VecDeque::from([(start, (0u8, 0u8), 0u32, start_key)]);
    let mut explored = Explored {
        states: 0,
        ends: 0,
        successes: 0,
        rolled_back: 0,
        other_failures: 0,
        downgrades: 0,
        longest: 0,
    };
    let path = |parent: &HashMap<Key, Option<(Key, Step)>>, mut at: Key| {
        let mut steps = vec![];
        while let Some(Some((from, step))) = parent.get(&at) {
            steps.push(*step);
            at = *from;
        }
        steps.reverse();
        steps
    };
    while let Some((world, (faults, restarts), depth, at)) = queue.pop_front() {
        explored.states += 1;
        explored.longest = explored.longest.max(depth);
        if let Some(v) = world.violation {
            panic!("N = {n}: {v:?} after {:?}", path(&parent, at));
        }
        if world.is_done() {
            explored.ends += 1;
            let record = world.ended.last().expect("an ended deployment");
            match record.outcome() {
                Some(Outcome::Succeeded { .. }) => explored.successes += 1,
                Some(Outcome::Failed(f)) => {
                    if let Rollback::Failed { .. } = f.rollback {
                        // A failure whose rollback faulted says so.
                        assert!(f.to_string().contains("the rollback failed too"));
                    }
                    if let Cause::Downgrade { .. } = f.cause {
                        explored.downgrades += 1;
                    }
                    if version == OLDER {
                        // Refused (or failed earlier) before anything was loaded or scaled.
                        assert_eq!(world.cluster.bundles.len(), 1, "N = {n}");
                        assert_eq!(world.cluster.bundles[0].scale, Some(n), "N = {n}");
                    }
                    if let Rollback::Completed { .. } = f.rollback {
                        explored.rolled_back += 1;
                    } else {
                        explored.other_failures += 1;
                    }
                }
                None => panic!("N = {n}: ended without an outcome"),
            }
            continue;
        }
        assert!(
            depth < MAX_DEPTH,
            "N = {n}: no end within {MAX_DEPTH} steps: {:?}",
            path(&parent, at)
        );
        let mut steps = world.enabled(faults < MAX_FAULTS);
        assert!(
            !steps.is_empty(),
            "N = {n}: stuck after {:?}",
            path(&parent, at)
        );
        if restarts < MAX_RESTARTS {
            steps.push(Step::Restart { late: false }).unwrap();
            steps.push(Step::Restart { late: true }).unwrap();
        }
        // A deadline is a fault only when something else could have happened first.
        let forced = world
            .enabled(false)
            .iter()
            .all(|s| matches!(s, Step::Deadline { .. }));
        for step in steps {
            let fault = step.is_fault() && !(forced && matches!(step, Step::Deadline { .. }));
            let faults = faults + u8::from(fault);
            let restarts = restarts + u8::from(matches!(step, Step::Restart { .. }));
            if faults > MAX_FAULTS {
                continue;
            }
            let mut next = world.clone();
            next.apply(step);
            let next_key = key(&next, (faults, restarts));
            if parent.contains_key(&next_key) {
                continue;
            }
            parent.insert(next_key, Some((at, step)));
            queue.push_back((next, (faults, restarts), depth + 1, next_key));
        }
    }
    explored
}

#[test]
fn test_exhaustive_lockstep_n_1_to_5() {
    run(Policy::default(), "");
}

/// With a settle time, each step that starts a new instance is watched until its end (a
/// deadline): a crash meanwhile is a lost instance, and the step fails.
#[test]
fn test_exhaustive_lockstep_with_a_settle_time_n_1_to_5() {
    let policy = Policy {
        settle: Duration::from_secs(5),
        ..Policy::default()
    };
    run(policy, " (settle 5s)");
}

/// A version published before the running one: every path ends failed, most of them refusing
/// the downgrade; none loads or scales anything.
#[test]
fn test_exhaustive_downgrade_n_1_to_3() {
    for n in 1..=3 {
        let started = Instant::now();
        let e = explore(n, Policy::default(), OLDER);
        println!(
            "N = {n} (a downgrade): {} states explored, {} ends ({} refused downgrades, {} \
             other failures), {:.1?}",
            e.states,
            e.ends,
            e.downgrades,
            e.other_failures - e.downgrades,
            started.elapsed()
        );
        assert_eq!((e.successes, e.rolled_back), (0, 0));
        assert!(e.downgrades > 0);
    }
}

fn run(policy: Policy, what: &str) {
    for n in 1..=5 {
        let started = Instant::now();
        let e = explore(n, policy, NEW);
        println!(
            "N = {n}{what}: {} states explored, {} ends ({} successes, {} rolled back, {} other \
             failures), longest path {} steps, {:.1?}",
            e.states,
            e.ends,
            e.successes,
            e.rolled_back,
            e.other_failures,
            e.longest,
            started.elapsed()
        );
        assert!(e.successes > 0 && e.rolled_back > 0);
    }
}
