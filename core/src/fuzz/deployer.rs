//! The `deployer` target: arbitrary sequences of notifications, cluster events, refusals,
//! crashes, time jumps, restarts and stray replies against the simulation's oracle.

use crate::deployer::{
    Command, CommandKind, DeploymentId, Name, NothingRunning, Policy, Reply, RollbackPolicy,
};
use crate::sim::fixture::{INCOMPATIBLE, NEW, NEWER, NEWEST, cluster, digest, request};
use crate::sim::{Rng, Step, World};
use crate::time::Duration;

/// Input layout: byte 0 sets the old scale (1 to 5), whether it has a configuration, and the
/// policies; each further byte is one move: below 200 an enabled step (faults included), 200
/// to 219 a notification of one of four versions (one incompatible), 220 to 229 a restart, 230
/// to 239 a time jump of up to 4.5 minutes, 240 and up a stray reply (which must be ignored).
/// At the end the world is driven without faults: every deployment must end.
pub fn deployer(data: &[u8]) {
    let Some((&setup, moves)) = data.split_first() else {
        return;
    };
    let scale = u32::from(setup % 5).saturating_add(1);
    let config = setup & 0x08 != 0;
    let policy = Policy {
        nothing_running: if setup & 0x10 != 0 {
            NothingRunning::StartOne
        } else {
            NothingRunning::Fail
        },
        rollback: if setup & 0x20 != 0 {
            RollbackPolicy::Off
        } else {
            RollbackPolicy::On
        },
        ..Policy::default()
    };
    let mut cluster = cluster(scale, config);
    if setup & 0x40 != 0 {
        cluster.never_starts = Some(digest(NEWER));
    }
    let mut world = World::<4>::new(policy, cluster);
    let mut next_id = 1u8;
    for &byte in moves {
        match byte {
            0..=199 => {
                let steps = world.enabled(true);
                let step = usize::from(byte)
                    .checked_rem(steps.len())
                    .and_then(|i| steps.get(i));
                if let Some(step) = step {
                    world.apply(*step);
                }
            }
            200..=219 => {
                let version = match byte % 4 {
                    0 => NEW,
                    1 => NEWER,
                    2 => NEWEST,
                    _ => INCOMPATIBLE,
                };
                let _ = world.notify(request(next_id, version));
                next_id = next_id.wrapping_add(1);
            }
            220..=229 => world.apply(Step::Restart {
                late: byte & 1 == 1,
            }),
            230..=239 => world.jump(Duration::from_secs(
                u64::from(byte.saturating_sub(230)).saturating_mul(30),
            )),
            _ => {
                let stray = Command {
                    deployment: DeploymentId::from_bytes([byte; 16]),
                    token: u32::from(byte),
                    kind: CommandKind::Observe {
                        name: Name::truncated("visualizer"),
                    },
                };
                assert!(world.stray_reply(&stray, Reply::Scaled).is_err());
            }
        }
        assert_eq!(world.violation, None);
    }
    let mut rng = Rng::new(u64::from(setup));
    assert!(world.drive_bounded(&mut rng, 0, 100_000).is_ok());
}
