//! Talking to other programs over the network: the HTTP client the adapters, the price
//! source, the notifier, remote write and the command-line tools share. Below the adapters;
//! above the vocabulary only.

pub mod http;
