//! Counting a Golem provider's settled invoices exactly, however many there are: two cursors
//! and a table of open invoices, all journaled by the ledger in one value ([`InvoiceCursor`]),
//! so a restart continues where the last journaled poll ended.
//!
//! - The creation cursor pages `GET /payment-api/v1/invoices` (yagna: `timestamp >
//!   afterTimestamp ORDER BY timestamp LIMIT maxItems`; the timestamp is set once, at insert,
//!   in milliseconds). Invoices this node *issued* (`issuerId` = its identity; the list also
//!   holds those it received as a requestor) are counted when SETTLED, or go into the open
//!   table while ISSUED/RECEIVED/ACCEPTED.
//! - The event cursor pages `GET /payment-api/v1/invoiceEvents` (same SQL paging; the type
//!   filter runs after the LIMIT, so every type is asked for and a short page really is the
//!   end). A settled event of an open invoice counts it and removes it.
//!
//! No cursor waits on the oldest unpaid invoice, so one that never settles is one row of the
//! open table (`depin_golem_invoices_open`), never a stall. Paging resumes at the cursor's
//! millisecond and skips the ids already seen there, so invoices that share a millisecond
//! across a page boundary count once.
//!
//! Amounts are per `paymentPlatform` (`<driver>-<network>-<token>`): GLM on polygon and
//! mainnet, tGLM on test networks (priced only if the config gives tGLM a price).

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};
use serde_json::Value as Json;

use super::decimal::Decimal;
use super::fields::decimal;

/// Items asked for per page (yagna's `maxItems`/`maxEvents`).
pub const PAGE: usize = 1000;

/// The event types asked for (every type, so yagna's filter after its LIMIT drops nothing).
pub const PROVIDER_EVENTS: &str = "ACCEPTED,REJECTED,SETTLED,CANCELLED,PAYMENT_EVENT,PAYMENT_OK";
pub const REQUESTOR_EVENTS: &str =
    "RECEIVED,ACCEPTED,REJECTED,CANCELLED,SETTLED,PAYMENT_EVENT,PAYMENT_OK";

/// An invoice issued and not yet settled.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct OpenInvoice {
    pub amount: Decimal,
    pub platform: String,
    #[serde(default)]
    pub accepted: bool,
    /// Counted already (at acceptance, with `count_accepted`).
    #[serde(default)]
    pub counted: bool,
}

/// Where the paging stands: what the ledger journals with the credits it produced.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct InvoiceCursor {
    /// The creation cursor (ms) and the ids read at that millisecond.
    pub ts_ms: Option<i64>,
    #[serde(default)]
    pub ids: Vec<String>,
    /// The event cursor (ms) and the events (invoice id and type) read at that millisecond.
    pub ev_ts_ms: Option<i64>,
    #[serde(default)]
    pub ev_ids: Vec<String>,
    #[serde(default)]
    pub open: BTreeMap<String, OpenInvoice>,
}

/// What the counting options are.
pub struct Options<'a> {
    /// The node's identity (`GET /me`).
    pub me: &'a str,
    pub count_accepted: bool,
    /// Networks to count; empty: every network.
    pub networks: &'a [String],
}

/// Credits per (token, network), and values that could not be used.
#[derive(Default, Debug)]
pub struct Tally {
    pub credits: BTreeMap<(String, String), Decimal>,
    pub skipped: Vec<String>,
}

impl Tally {
    fn credit(&mut self, platform: &str, amount: Decimal) {
        let (token, network) = platform_parts(platform);
        let e = self.credits.entry((token, network)).or_default();
        *e = e.checked_add(amount).unwrap_or(*e);
    }
}

/// `erc20-polygon-glm` → (`GLM`, `polygon`); `erc20-hoodi-tglm` → (`tGLM`, `hoodi`); an
/// older form (`NGNT`) → (the platform in upper case, "").
pub fn platform_parts(platform: &str) -> (String, String) {
    let parts: Vec<&str> = platform.split('-').collect();
    match parts.as_slice() {
        [_driver, network @ .., token] if !network.is_empty() => {
            let token = match token.to_ascii_lowercase().as_str() {
                "glm" => "GLM".to_string(),
                "tglm" => "tGLM".to_string(),
                other => other.to_ascii_uppercase(),
            };
            (token, network.join("-"))
        }
        _ => (platform.to_ascii_uppercase(), String::new()),
    }
}

/// Milliseconds of an RFC 3339 time.
pub fn parse_ms(s: &str) -> Option<i64> {
    let t = humantime::parse_rfc3339_weak(s).ok()?;
    let d = t.duration_since(std::time::UNIX_EPOCH).ok()?;
    i64::try_from(d.as_millis()).ok()
}

/// The `afterTimestamp` that resumes at cursor `ts` (ids at `ts` seen) or after it.
pub fn after_ms(ts: i64, ids_seen: bool) -> i64 {
    if ids_seen {
        ts - 1
    } else {
        ts
    }
}

/// What one page did.
#[derive(Debug, PartialEq)]
pub enum Page {
    /// Shorter than [`PAGE`]: nothing more now.
    Complete,
    /// Full: ask again.
    More,
    /// Full of items at the cursor's own millisecond, all seen: paging cannot pass them.
    Stuck,
}

/// Advances (`ts`, `ids`) over an item; `false` when it was read already.
fn advance(ts: &mut Option<i64>, ids: &mut Vec<String>, t: i64, id: &str) -> bool {
    match *ts {
        Some(c) if t < c => false,
        Some(c) if t == c => {
            if ids.iter().any(|x| x == id) {
                return false;
            }
            ids.push(id.to_string());
            true
        }
        _ => {
            *ts = Some(t);
            ids.clear();
            ids.push(id.to_string());
            true
        }
    }
}

impl InvoiceCursor {
    /// Takes one page of `GET /invoices`.
    pub fn take_invoices(&mut self, page: &[Json], o: &Options<'_>, tally: &mut Tally) -> Page {
        let mut new = 0;
        for (i, inv) in page.iter().enumerate() {
            let id = inv.get("invoiceId").and_then(Json::as_str);
            let ts = inv
                .get("timestamp")
                .and_then(Json::as_str)
                .and_then(parse_ms);
            let (Some(id), Some(ts)) = (id, ts) else {
                tally.skipped.push(format!("/invoices/{i}/timestamp"));
                continue;
            };
            if !advance(&mut self.ts_ms, &mut self.ids, ts, id) {
                continue;
            }
            new += 1;
            if inv.get("issuerId").and_then(Json::as_str) != Some(o.me) {
                continue; // received as a requestor: not earned
            }
            let platform = inv
                .get("paymentPlatform")
                .and_then(Json::as_str)
                .unwrap_or("");
            if !o.networks.is_empty() && !o.networks.contains(&platform_parts(platform).1) {
                continue;
            }
            let Some(amount) = inv
                .get("amount")
                .and_then(decimal)
                .filter(|a| !a.is_negative())
            else {
                tally.skipped.push(format!("/invoices/{i}/amount"));
                continue;
            };
            match inv.get("status").and_then(Json::as_str).unwrap_or("") {
                "SETTLED" => tally.credit(platform, amount),
                s @ ("ISSUED" | "RECEIVED" | "ACCEPTED") => {
                    let accepted = s == "ACCEPTED";
                    let counted = accepted && o.count_accepted;
                    if counted {
                        tally.credit(platform, amount);
                    }
                    self.open.insert(
                        id.to_string(),
                        OpenInvoice {
                            amount,
                            platform: platform.to_string(),
                            accepted,
                            counted,
                        },
                    );
                }
                _ => {}
            }
        }
        page_outcome(page.len(), new)
    }

    /// Takes one page of `GET /invoiceEvents`.
    pub fn take_events(&mut self, page: &[Json], o: &Options<'_>, tally: &mut Tally) -> Page {
        let mut new = 0;
        for (i, ev) in page.iter().enumerate() {
            let id = ev.get("invoiceId").and_then(Json::as_str);
            let ty = ev.get("eventType").and_then(Json::as_str);
            let ts = ev
                .get("eventDate")
                .and_then(Json::as_str)
                .and_then(parse_ms);
            let (Some(id), Some(ty), Some(ts)) = (id, ty, ts) else {
                tally.skipped.push(format!("/invoiceEvents/{i}/eventDate"));
                continue;
            };
            if !advance(
                &mut self.ev_ts_ms,
                &mut self.ev_ids,
                ts,
                &format!("{id}/{ty}"),
            ) {
                continue;
            }
            new += 1;
            // Events of invoices not in the table are the requestor side's, or older than
            // the first poll: nothing to count.
            let Some(inv) = self.open.get_mut(id) else {
                continue;
            };
            match ty {
                "InvoiceSettledEvent" => {
                    if !inv.counted {
                        tally.credit(&inv.platform, inv.amount);
                    }
                    self.open.remove(id);
                }
                "InvoiceAcceptedEvent" => {
                    inv.accepted = true;
                    if o.count_accepted && !inv.counted {
                        inv.counted = true;
                        tally.credit(&inv.platform, inv.amount);
                    }
                }
                "InvoiceRejectedEvent" | "InvoiceCancelledEvent" if !inv.counted => {
                    self.open.remove(id);
                }
                _ => {}
            }
        }
        page_outcome(page.len(), new)
    }

    /// Open invoices per network, and the accepted amount not yet settled per (token, network).
    pub fn open_summary(&self) -> (BTreeMap<String, usize>, BTreeMap<(String, String), Decimal>) {
        let mut count = BTreeMap::new();
        let mut receivable: BTreeMap<(String, String), Decimal> = BTreeMap::new();
        for inv in self.open.values() {
            let (token, network) = platform_parts(&inv.platform);
            *count.entry(network.clone()).or_insert(0) += 1;
            if inv.accepted {
                let e = receivable.entry((token, network)).or_default();
                *e = e.checked_add(inv.amount).unwrap_or(*e);
            }
        }
        (count, receivable)
    }
}

fn page_outcome(len: usize, new: usize) -> Page {
    if len < PAGE {
        Page::Complete
    } else if new == 0 {
        Page::Stuck
    } else {
        Page::More
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn fixture(name: &str) -> Vec<Json> {
        let p = format!(
            "{}/tests/fixtures/nodes/golem/{name}",
            env!("CARGO_MANIFEST_DIR")
        );
        serde_json::from_str(&std::fs::read_to_string(p).unwrap()).unwrap()
    }

    const ME: &str = "0x3e2d6a1f4c7b8e9d0a1b2c3d4e5f60718293a4b5";

    #[test]
    fn platforms() {
        let p = |s| platform_parts(s);
        assert_eq!(p("erc20-polygon-glm"), ("GLM".into(), "polygon".into()));
        assert_eq!(p("erc20-hoodi-tglm"), ("tGLM".into(), "hoodi".into()));
        assert_eq!(p("NGNT"), ("NGNT".into(), String::new()));
    }

    #[test]
    fn issued_settled_counts_received_and_test_networks_apart() {
        let mut c = InvoiceCursor::default();
        let mut t = Tally::default();
        let o = Options {
            me: ME,
            count_accepted: false,
            networks: &[],
        };
        assert_eq!(
            c.take_invoices(&fixture("invoices.constructed.json"), &o, &mut t),
            Page::Complete
        );
        // 0.112345 GLM settled on polygon; 5.000000000000000001 tGLM on hoodi; the received
        // invoice (2 GLM) and the rejected one are not earned.
        let glm = &t.credits[&("GLM".to_string(), "polygon".to_string())];
        assert_eq!(glm.to_string(), "0.112345000000000000");
        let tglm = &t.credits[&("tGLM".to_string(), "hoodi".to_string())];
        assert_eq!(tglm.to_string(), "5.000000000000000001");
        assert_eq!(c.open.len(), 1, "{:?}", c.open);
        let (open, receivable) = c.open_summary();
        assert_eq!(open["polygon"], 1);
        assert_eq!(
            receivable[&("GLM".into(), "polygon".into())],
            Decimal::parse("0.3").unwrap()
        );
        // Events: the open invoice is accepted, nothing settles it here.
        let mut t2 = Tally::default();
        c.take_events(&fixture("invoice_events.constructed.json"), &o, &mut t2);
        assert!(t2.credits.is_empty());
        // Reading the same page again counts nothing.
        let mut t3 = Tally::default();
        c.take_invoices(&fixture("invoices.constructed.json"), &o, &mut t3);
        assert!(t3.credits.is_empty());
    }

    #[test]
    fn a_full_page_of_one_millisecond_is_stuck_not_looping() {
        let mut c = InvoiceCursor::default();
        let o = Options {
            me: ME,
            count_accepted: false,
            networks: &[],
        };
        let page: Vec<Json> = (0..PAGE)
            .map(|i| serde_json::json!({"invoiceId": format!("i{i}"), "issuerId": ME, "paymentPlatform": "erc20-polygon-glm", "timestamp": "2026-01-01T10:00:00.250Z", "amount": "1", "status": "SETTLED"}))
            .collect();
        let mut t = Tally::default();
        assert_eq!(c.take_invoices(&page, &o, &mut t), Page::More);
        assert_eq!(c.take_invoices(&page, &o, &mut t), Page::Stuck);
        assert_eq!(
            t.credits[&("GLM".into(), "polygon".into())],
            Decimal::parse("1000").unwrap()
        );
    }
}
