//! The rule manager: loads rule files, schedules each group on its interval, reloads, and
//! hands the alerts to send to the notifier. (Work in progress.)

/// Options of the manager (CLI flags).
#[derive(Clone, Debug)]
pub struct ManagerOptions {}

pub struct RuleManager {}
