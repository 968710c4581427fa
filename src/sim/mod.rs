//! The simulator: the market model that simulated nodes earn from (`market`), scenario files
//! (`scenario`), the simulated node a scenario runs (`node`), and the virtual-clock driver with
//! its baselines (static, greedy, hindsight oracle) and report (`driver`), writing a run into a
//! storage directory (`storage`); markets drawn from documented ranges (`random`) and run in a
//! batch (`batch`). Everything takes its
//! time from the caller (a [`crate::clock::Clock`]), so a simulated month runs in seconds. It
//! never edits the optimizer or the reallocation code: it drives them.

pub mod batch;
pub mod driver;

pub mod node;
pub mod plot;
pub mod progress;
pub mod random;
pub mod scenario;
pub mod storage;
