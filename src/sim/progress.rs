//! The progress bar of `depin-orcha simulate` (on stderr, only when it is a terminal: the
//! caller decides). Fed with the fraction of simulated time done.

use indicatif::{ProgressBar, ProgressStyle};

/// A callback that moves a bar of 1000 steps; it finishes itself at 100 %.
pub fn bar() -> impl Fn(f64) + Send + Sync {
    let pb = ProgressBar::new(1000);
    if let Ok(style) =
        ProgressStyle::with_template("simulating {bar:40} {percent:>3}% {elapsed_precise}")
    {
        pb.set_style(style);
    }
    move |f: f64| {
        let pos = (f.clamp(0.0, 1.0) * 1000.0) as u64;
        pb.set_position(pos);
        if pos >= 1000 {
            pb.finish_and_clear();
        }
    }
}
