//! `/api/v1/rules`, `/api/v1/alerts` and `/-/reload`. (Work in progress.)
