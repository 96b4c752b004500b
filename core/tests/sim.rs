//! Scenarios of the deterministic simulation (`lockstep_core::sim`), each over many seeds: the
//! fake cluster answers with seeded latencies and interleavings, the oracle checks every state.

use lockstep_core::deployer::{
    Admitted, Cause, CommandKind, DeploymentId, Fault, NothingRunning, Outcome, Policy, Record,
    Rollback, RollbackPolicy,
};
use lockstep_core::sim::fixture::{
    INCOMPATIBLE, NEW, NEWER, NEWEST, cluster, digest, new_id, old_id, request,
};
use lockstep_core::sim::{Cluster, Rng, SimBundle, Step, World};

const SEEDS: u64 = 1_000;
const MAX_STEPS: usize = 20_000;

fn ended(world: &World<4>, id: u8) -> Record {
    let id = DeploymentId::from_bytes([id; 16]);
    *world
        .ended
        .iter()
        .find(|r| r.id() == id)
        .expect("the deployment ended")
}

/// Notifies `version` and drives to the end without faults.
fn run(policy: Policy, cluster: Cluster, version: u8, seed: u64) -> World<4> {
    let mut world = World::new(policy, cluster);
    assert!(matches!(
        world.notify(request(1, version)),
        Ok(Admitted { .. })
    ));
    let mut rng = Rng::new(seed);
    world
        .drive_bounded(&mut rng, 0, MAX_STEPS)
        .unwrap_or_else(|v| panic!("seed {seed}: {v:?}"));
    world
}

fn succeeded(record: &Record) -> bool {
    matches!(
        record.outcome(),
        Some(&Outcome::Succeeded {
            nothing_to_do: false
        })
    )
}

// ---- success ---------------------------------------------------------------------------------

fn lockstep_succeeds(scale: u32, config: bool) {
    for seed in 0..SEEDS {
        let world = run(Policy::default(), cluster(scale, config), NEW, seed);
        let record = ended(&world, 1);
        assert!(succeeded(&record), "scale {scale}, seed {seed}: {record:?}");
        let new = world.cluster.get(new_id(NEW, config)).unwrap();
        assert_eq!((new.scale, new.started), (Some(scale), scale));
        let old = world.cluster.get(old_id(config)).unwrap();
        assert_eq!(
            (old.scale, old.started),
            (Some(0), 0),
            "stopped, still loaded"
        );
    }
}

#[test]
fn test_sim_scale_1() {
    lockstep_succeeds(1, false);
    lockstep_succeeds(1, true);
}

#[test]
fn test_sim_scale_3() {
    lockstep_succeeds(3, false);
    lockstep_succeeds(3, true);
}

#[test]
fn test_sim_scale_10() {
    lockstep_succeeds(10, false);
    lockstep_succeeds(10, true);
}

// ---- the gate --------------------------------------------------------------------------------

#[test]
fn test_sim_compatibility_mismatch() {
    for seed in 0..SEEDS {
        let world = run(Policy::default(), cluster(3, true), INCOMPATIBLE, seed);
        let failure = *ended(&world, 1).failure().expect("failed");
        assert!(matches!(
            failure.cause,
            Cause::NoRunning { running: Some(other), .. } if other.as_str() == "1"
        ));
        let old = world.cluster.get(old_id(true)).unwrap();
        assert_eq!(
            old.started, 3,
            "the other compatibilityVersion is never touched"
        );
        assert_eq!(world.cluster.bundles.len(), 1, "nothing loaded");
    }
}

#[test]
fn test_sim_nothing_running() {
    for seed in 0..SEEDS {
        let world = run(Policy::default(), cluster(0, false), NEW, seed);
        let failure = *ended(&world, 1).failure().expect("failed");
        assert!(matches!(
            failure.cause,
            Cause::NoRunning { running: None, .. }
        ));

        let start_one = Policy {
            nothing_running: NothingRunning::StartOne,
            ..Policy::default()
        };
        let world = run(start_one, cluster(0, false), NEW, seed);
        assert!(succeeded(&ended(&world, 1)));
        assert_eq!(world.cluster.get(new_id(NEW, false)).unwrap().started, 1);
    }
}

#[test]
fn test_sim_several_compatible_running() {
    for seed in 0..SEEDS {
        let mut c = cluster(2, false);
        let second = SimBundle::running(new_id(NEWEST, false), "visualizer", "1", None, 1);
        c.bundles.push(second).unwrap();
        let world = run(Policy::default(), c, NEW, seed);
        let failure = *ended(&world, 1).failure().expect("failed");
        assert!(matches!(failure.cause, Cause::Several { count: 2, .. }));
        assert!(
            world
                .cluster
                .bundles
                .iter()
                .all(|b| b.scale == Some(b.started))
        );
    }
}

// ---- several notifications ------------------------------------------------------------------

#[test]
fn test_sim_superseded() {
    for seed in 0..SEEDS {
        let mut world = World::<4>::new(Policy::default(), cluster(3, true));
        let mut rng = Rng::new(seed);
        world.notify(request(1, NEW)).unwrap();
        // While the first deployment's instances start (its lock-step is under way), two
        // more versions are notified in turn.
        let deploying = |w: &World<4>| {
            w.deployer
                .records()
                .any(|r| matches!(r.phase, lockstep_core::deployer::Phase::LockStep { .. }))
        };
        while !deploying(&world) {
            let steps = world.enabled(false);
            let pick = rng.below(steps.len() as u32) as usize;
            world.apply(steps[pick]);
        }
        world.notify(request(2, NEWER)).unwrap();
        for _ in 0..rng.below(4) {
            let steps = world.enabled(false);
            let pick = rng.below(steps.len() as u32) as usize;
            world.apply(steps[pick]);
        }
        world.notify(request(3, NEWEST)).unwrap();
        world
            .drive_bounded(&mut rng, 0, MAX_STEPS)
            .unwrap_or_else(|v| panic!("seed {seed}: {v:?}"));
        let first = ended(&world, 1);
        let second = ended(&world, 2);
        let third = ended(&world, 3);
        let by_third = DeploymentId::from_bytes([3; 16]);
        // The second never ran: the third, notified later, superseded it.
        assert_eq!(
            second.failure().map(|f| f.cause),
            Some(Cause::Superseded { by: by_third }),
            "seed {seed}"
        );
        // The first ran to its end; then the third replaced it.
        assert!(succeeded(&first), "seed {seed}: {first:?}");
        assert!(succeeded(&third), "seed {seed}: {third:?}");
        assert_eq!(third.old(), Some(new_id(NEW, true)));
        assert_eq!(world.cluster.get(new_id(NEWEST, true)).unwrap().started, 3);
        assert_eq!(world.cluster.get(new_id(NEW, true)).unwrap().started, 0);
        assert!(
            world.cluster.get(new_id(NEWER, true)).is_none(),
            "never loaded"
        );
    }
}

#[test]
fn test_sim_redelivery() {
    for seed in 0..SEEDS {
        let mut world = World::<4>::new(Policy::default(), cluster(2, false));
        let mut rng = Rng::new(seed);
        world.notify(request(1, NEW)).unwrap();
        for _ in 0..rng.below(30) {
            let steps = world.enabled(false);
            if steps.is_empty() {
                break;
            }
            let pick = rng.below(steps.len() as u32) as usize;
            world.apply(steps[pick]);
        }
        if !world.is_done() {
            assert_eq!(
                world.notify(request(2, NEW)),
                Ok(Admitted {
                    id: DeploymentId::from_bytes([1; 16]),
                    redelivery: true
                })
            );
        }
        world.drive_bounded(&mut rng, 0, MAX_STEPS).unwrap();
        assert!(succeeded(&ended(&world, 1)));
        assert_eq!(world.ended.len(), 1, "seed {seed}: one deployment");
    }
}

// ---- failures and rollback -------------------------------------------------------------------

#[test]
fn test_sim_deadline_rolls_back() {
    for scale in [1, 3] {
        for seed in 0..SEEDS {
            let mut c = cluster(scale, true);
            c.never_starts = Some(digest(NEW));
            let world = run(Policy::default(), c, NEW, seed);
            let failure = *ended(&world, 1).failure().expect("failed");
            assert!(matches!(
                failure.cause,
                Cause::Step {
                    fault: Fault::Deadline,
                    ..
                }
            ));
            assert_eq!(failure.rollback, Rollback::Completed { old: scale });
            assert_eq!(world.cluster.get(old_id(true)).unwrap().started, scale);
            assert_eq!(world.cluster.get(new_id(NEW, true)).unwrap().scale, Some(0));
        }
    }
}

/// Whether a command goes to the control API (the repository download does not).
/// The commands whose refusal fails the deployment: all but the download, and the screening
/// (a screening that cannot tell lets the deployment go on; the check after targeting stands).
fn control_api(kind: &CommandKind) -> bool {
    !matches!(
        kind,
        CommandKind::Resolve { .. } | CommandKind::Screen { .. }
    )
}

/// Drives without faults, but refuses the `k`-th control-API command (counting from 0);
/// returns whether there was a `k`-th.
fn refuse_kth(world: &mut World<4>, rng: &mut Rng, k: usize) -> bool {
    let mut seen = 0;
    let mut refused = false;
    for _ in 0..MAX_STEPS {
        if world.is_done() {
            return refused;
        }
        let steps = world.enabled(false);
        assert!(!steps.is_empty(), "stuck");
        let mut step = steps[rng.below(steps.len() as u32) as usize];
        if let Step::Answer(i) = step
            && control_api(&world.in_flight[i].command.kind)
        {
            if seen == k {
                step = Step::Refuse(i);
                refused = true;
            }
            seen += 1;
        }
        world.apply(step);
        assert_eq!(world.violation, None);
    }
    panic!("no end");
}

#[test]
fn test_sim_refusal_at_every_step_rolls_back() {
    for config in [false, true] {
        for seed in 0..SEEDS / 4 {
            let mut k = 0;
            loop {
                let mut world = World::<4>::new(Policy::default(), cluster(3, config));
                let mut rng = Rng::new(seed);
                world.notify(request(1, NEW)).unwrap();
                if !refuse_kth(&mut world, &mut rng, k) {
                    break;
                }
                let record = ended(&world, 1);
                let failure = record
                    .failure()
                    .unwrap_or_else(|| panic!("k {k}: {record:?}"));
                // Refused before anything was scaled: nothing to undo; after: rolled back.
                assert!(
                    matches!(
                        failure.rollback,
                        Rollback::NotNeeded | Rollback::Completed { old: 3 }
                    ),
                    "k {k}, seed {seed}: {failure:?}"
                );
                let old = world.cluster.get(old_id(config)).unwrap();
                assert_eq!((old.scale, old.started), (Some(3), 3), "k {k}, seed {seed}");
                k += 1;
            }
            assert!(
                k >= 13,
                "a scale-3 deployment makes at least 13 control-API requests"
            );
        }
    }
}

#[test]
fn test_sim_refusal_during_rollback() {
    for seed in 0..SEEDS {
        let mut c = cluster(3, false);
        c.never_starts = Some(digest(NEW));
        let mut world = World::<4>::new(Policy::default(), c);
        let mut rng = Rng::new(seed);
        world.notify(request(1, NEW)).unwrap();
        let mut rolling_back = false;
        for _ in 0..MAX_STEPS {
            if world.is_done() {
                break;
            }
            let rollback_now = world
                .deployer
                .records()
                .any(|r| matches!(r.state(), lockstep_core::deployer::State::RollingBack));
            let steps = world.enabled(false);
            let step = match steps.iter().find(|s| matches!(s, Step::Answer(_))) {
                Some(Step::Answer(i)) if rollback_now && !rolling_back => {
                    rolling_back = true;
                    Step::Refuse(*i)
                }
                _ => steps[rng.below(steps.len() as u32) as usize],
            };
            world.apply(step);
        }
        let failure = *ended(&world, 1).failure().expect("failed");
        assert!(
            matches!(failure.rollback, Rollback::Failed { .. }),
            "seed {seed}: {failure:?}"
        );
        assert!(failure.to_string().contains("the rollback failed too"));
        assert_eq!(world.violation, None);
    }
}

#[test]
fn test_sim_new_instance_crashes_midway() {
    for seed in 0..SEEDS {
        let mut world = World::<4>::new(Policy::default(), cluster(3, true));
        let mut rng = Rng::new(seed);
        world.notify(request(1, NEW)).unwrap();
        let mut crashed = false;
        for _ in 0..MAX_STEPS {
            if world.is_done() {
                break;
            }
            let new = world.cluster.index(new_id(NEW, true));
            let steps = world.enabled(false);
            let step = match new {
                Some(i) if !crashed && world.cluster.bundles[i].started == 2 => {
                    crashed = true;
                    Step::Crash(i)
                }
                _ => steps[rng.below(steps.len() as u32) as usize],
            };
            world.apply(step);
            assert_eq!(world.violation, None, "seed {seed}");
        }
        assert!(crashed);
        // The cluster replaced the instance: the deployment succeeds.
        assert!(succeeded(&ended(&world, 1)), "seed {seed}");
        assert_eq!(world.cluster.get(new_id(NEW, true)).unwrap().started, 3);
    }
}

#[test]
fn test_sim_random_faults_keep_every_promise() {
    // Refusals, crashes and early deadlines anywhere: whatever the outcome, the oracle holds
    // in every state and every deployment ends.
    for seed in 0..SEEDS * 5 {
        // Rollback on and off: a failure that leaves things where they stand reports them as
        // last seen (the oracle's `Misreported`).
        let policy = Policy {
            rollback: if seed % 3 == 0 {
                RollbackPolicy::Off
            } else {
                RollbackPolicy::On
            },
            ..Policy::default()
        };
        let mut world = World::<4>::new(policy, cluster(1 + (seed % 5) as u32, seed % 2 == 0));
        world.notify(request(1, NEW)).unwrap();
        let mut rng = Rng::new(seed);
        world
            .drive_bounded(&mut rng, 50, MAX_STEPS)
            .unwrap_or_else(|v| panic!("seed {seed}: {v:?}"));
    }
}

// ---- resume ----------------------------------------------------------------------------------

#[test]
fn test_sim_resume_from_every_step() {
    for seed in 0..SEEDS / 4 {
        // How many steps a run of this seed takes.
        let total = {
            let mut world = World::<4>::new(Policy::default(), cluster(3, true));
            world.notify(request(1, NEW)).unwrap();
            world
                .drive_bounded(&mut Rng::new(seed), 0, MAX_STEPS)
                .unwrap()
        };
        for k in 0..total {
            for late in [false, true] {
                let mut world = World::<4>::new(Policy::default(), cluster(3, true));
                world.notify(request(1, NEW)).unwrap();
                let mut rng = Rng::new(seed);
                let taken = world.drive_bounded(&mut rng, 0, k);
                assert!(matches!(
                    taken,
                    Ok(_) | Err(lockstep_core::sim::Violation::Livelock)
                ));
                if world.is_done() {
                    break;
                }
                world.apply(Step::Restart { late });
                world
                    .drive_bounded(&mut rng, 0, MAX_STEPS)
                    .unwrap_or_else(|v| panic!("seed {seed}, restart after {k}: {v:?}"));
                let record = ended(&world, 1);
                assert!(
                    succeeded(&record),
                    "seed {seed}, restart after {k}: {record:?}"
                );
                let new = world.cluster.get(new_id(NEW, true)).unwrap();
                assert_eq!(new.started, 3);
            }
        }
    }
}
