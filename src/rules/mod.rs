//! Recording and alerting rules: rule files, groups, the alerting state machine, templates and
//! the notifier. This file only declares the submodules.

pub mod template;
