//! The Prometheus remote write 1.0 wire format: the `WriteRequest` protobuf messages (as in
//! Prometheus' `prompb/remote.proto` and `types.proto`, samples only: no exemplars, histograms
//! or metadata) and the snappy block compression around them.

use prost::Message;

use crate::labels::Labels;

/// `prometheus.WriteRequest`. Field 3 (metadata) is not sent.
#[derive(Clone, PartialEq, prost::Message)]
pub struct WriteRequest {
    #[prost(message, repeated, tag = "1")]
    pub timeseries: Vec<TimeSeries>,
}

/// `prometheus.TimeSeries`: labels sorted by name, samples in time order.
#[derive(Clone, PartialEq, prost::Message)]
pub struct TimeSeries {
    #[prost(message, repeated, tag = "1")]
    pub labels: Vec<Label>,
    #[prost(message, repeated, tag = "2")]
    pub samples: Vec<Sample>,
}

#[derive(Clone, PartialEq, prost::Message)]
pub struct Label {
    #[prost(string, tag = "1")]
    pub name: String,
    #[prost(string, tag = "2")]
    pub value: String,
}

/// `prometheus.Sample`: the value's bits go on the wire unchanged, so the staleness NaN stays
/// the staleness NaN.
#[derive(Clone, PartialEq, prost::Message)]
pub struct Sample {
    #[prost(double, tag = "1")]
    pub value: f64,
    #[prost(int64, tag = "2")]
    pub timestamp: i64,
}

/// The remote write headers of protocol 1.0.
pub const CONTENT_TYPE: &str = "application/x-protobuf";
pub const CONTENT_ENCODING: &str = "snappy";
pub const VERSION_HEADER: &str = "X-Prometheus-Remote-Write-Version";
pub const VERSION: &str = "0.1.0";

/// One series with its samples, labels already sorted (as [`Labels`] keeps them).
pub fn time_series(labels: &Labels, samples: impl IntoIterator<Item = (i64, f64)>) -> TimeSeries {
    TimeSeries {
        labels: labels
            .iter()
            .map(|l| Label {
                name: l.name.clone(),
                value: l.value.clone(),
            })
            .collect(),
        samples: samples
            .into_iter()
            .map(|(timestamp, value)| Sample { value, timestamp })
            .collect(),
    }
}

/// The uncompressed protobuf bytes of a request.
pub fn encode(req: &WriteRequest) -> Vec<u8> {
    req.encode_to_vec()
}

/// Snappy block format (not the framed stream format), as remote write requires.
pub fn compress(raw: &[u8]) -> Result<Vec<u8>, snap::Error> {
    snap::raw::Encoder::new().compress_vec(raw)
}

pub fn decompress(data: &[u8]) -> Result<Vec<u8>, snap::Error> {
    snap::raw::Decoder::new().decompress_vec(data)
}

/// Decodes an uncompressed request (receivers in tests, queue checks).
pub fn decode(raw: &[u8]) -> Result<WriteRequest, prost::DecodeError> {
    WriteRequest::decode(raw)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::tsdb::{is_stale_nan, stale_nan};

    #[test]
    fn round_trip_keeps_the_stale_nan_and_concatenation_merges_requests() {
        let l = Labels::from_pairs([("__name__", "up"), ("host", "a")]);
        let a = WriteRequest {
            timeseries: vec![time_series(&l, [(1000, 1.0), (2000, stale_nan())])],
        };
        let b = WriteRequest {
            timeseries: vec![time_series(&l, [(3000, 2.5)])],
        };
        let mut bytes = encode(&a);
        bytes.extend(encode(&b));
        let z = compress(&bytes).unwrap();
        let back = decode(&decompress(&z).unwrap()).unwrap();
        assert_eq!(back.timeseries.len(), 2);
        assert_eq!(back.timeseries[0].labels[0].name, "__name__");
        assert!(is_stale_nan(back.timeseries[0].samples[1].value));
        assert_eq!(back.timeseries[1].samples[0].timestamp, 3000);
    }

    #[test]
    fn wire_bytes_match_the_protobuf_layout() {
        // Field 1 (timeseries), length-delimited; inside: label {1: "a", 2: "b"}, sample
        // {1: double 1.0, 2: varint 5}.
        let req = WriteRequest {
            timeseries: vec![time_series(&Labels::from_pairs([("a", "b")]), [(5, 1.0)])],
        };
        let want: Vec<u8> = vec![
            0x0a, 0x15, // timeseries, 21 bytes
            0x0a, 0x06, 0x0a, 0x01, b'a', 0x12, 0x01, b'b', // label
            0x12, 0x0b, 0x09, 0, 0, 0, 0, 0, 0, 0xf0, 0x3f, 0x10, 0x05, // sample
        ];
        assert_eq!(encode(&req), want);
    }
}
