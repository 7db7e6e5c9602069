//! One side of a metric: `/api/v1/query_range` over the window, every value of every series
//! returned, through the project's HTTP layer. A bad answer is "no data" with a reason.

use std::time::Duration;

use serde::Serialize;
use time::OffsetDateTime;

use super::Side;

/// A Prometheus answer is read up to this size (300 points × many series fits easily).
const MAX_BODY: usize = 16 << 20;

/// Each query gives up after this long (retries of transient failures included per attempt).
const TIMEOUT: Duration = Duration::from_secs(30);

/// At most about this many points per series.
const MAX_POINTS: u64 = 300;

/// The range queried: `start` and `end` in RFC 3339 (UTC), `step` in seconds.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Window {
    pub start: OffsetDateTime,
    pub end: OffsetDateTime,
    pub step: u64,
}

impl Window {
    /// `end` = now (whole seconds), `start` = end − window, `step` the smallest whole number
    /// of seconds (at least 1) giving at most 300 steps.
    pub fn ending_now(window: Duration) -> Window {
        let end = OffsetDateTime::now_utc()
            .replace_nanosecond(0)
            .unwrap_or(OffsetDateTime::UNIX_EPOCH);
        let secs = window.as_secs().max(1);
        let start = end - time::Duration::seconds(i64::try_from(secs).unwrap_or(i64::MAX / 2));
        Window {
            start,
            end,
            step: secs.div_ceil(MAX_POINTS).max(1),
        }
    }
}

impl Serialize for Window {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        use serde::ser::SerializeStruct;
        let rfc = |t: OffsetDateTime| {
            t.format(&time::format_description::well_known::Rfc3339)
                .unwrap_or_default()
        };
        let mut st = s.serialize_struct("Window", 3)?;
        st.serialize_field("start", &rfc(self.start))?;
        st.serialize_field("end", &rfc(self.end))?;
        st.serialize_field("step", &self.step)?;
        st.end()
    }
}

/// A Prometheus URL for messages: credentials masked.
pub fn shown(base: &str) -> String {
    reqwest::Url::parse(base)
        .map(|u| crate::http::safe_url(&u))
        .unwrap_or_else(|_| base.to_string())
}

/// Read one side: every finite value of every series the query returns over the window.
pub async fn fetch(base: &str, query: &str, version: &str, window: Window) -> Side {
    let mut side = Side {
        version: version.to_string(),
        query: query.to_string(),
        window,
        values: Vec::new(),
        error: None,
    };
    match query_range(base, query, window).await {
        Ok(values) => side.values = values,
        Err(e) => {
            side.error = Some(format!(
                "Prometheus at {}, query `{query}`: {e}",
                shown(base)
            ))
        }
    }
    side
}

async fn query_range(base: &str, query: &str, w: Window) -> Result<Vec<f64>, String> {
    let mut url = reqwest::Url::parse(base)
        .and_then(|b| b.join("api/v1/query_range"))
        .map_err(|e| format!("bad Prometheus URL: {e}"))?;
    url.query_pairs_mut()
        .append_pair("query", query)
        .append_pair("start", &w.start.unix_timestamp().to_string())
        .append_pair("end", &w.end.unix_timestamp().to_string())
        .append_pair("step", &w.step.to_string());
    let resp = crate::http::send(&crate::http::RetryPolicy::from_env(), |client| {
        client.get(url.clone()).timeout(TIMEOUT)
    })
    .await
    .map_err(|e| crate::http::transport_kind(&e).to_string())?;
    let status = resp.status().as_u16();
    let body = crate::http::read_limited(resp, MAX_BODY)
        .await
        .map_err(|e| match e {
            crate::http::BodyError::TooLarge { limit } => {
                format!("the answer is larger than {} MiB", limit >> 20)
            }
            crate::http::BodyError::Transport(e) => crate::http::transport_kind(&e).to_string(),
        })?;
    let doc: serde_json::Value = serde_json::from_slice(&body).map_err(|_| {
        if (200..300).contains(&status) {
            "the answer is not JSON".to_string()
        } else {
            format!("HTTP {status}")
        }
    })?;
    if doc["status"] != "success" || !(200..300).contains(&status) {
        return Err(format!(
            "HTTP {status}: {}",
            doc["error"].as_str().unwrap_or("the query failed")
        ));
    }
    values(&doc["data"])
}

/// Every finite value of a `matrix` (or, leniently, `vector`/`scalar`) result. NaN and ±Inf
/// (say, a ratio over no traffic) are dropped: they carry no order for a rank test.
fn values(data: &serde_json::Value) -> Result<Vec<f64>, String> {
    let parse = |pair: &serde_json::Value| -> Option<f64> {
        pair.get(1)
            .and_then(|v| v.as_str())
            .and_then(|s| s.parse::<f64>().ok())
            .filter(|v| v.is_finite())
    };
    let result = &data["result"];
    match data["resultType"].as_str() {
        Some("matrix") => Ok(result
            .as_array()
            .into_iter()
            .flatten()
            .filter_map(|series| series["values"].as_array())
            .flatten()
            .filter_map(parse)
            .collect()),
        Some("vector") => Ok(result
            .as_array()
            .into_iter()
            .flatten()
            .filter_map(|s| parse(&s["value"]))
            .collect()),
        Some("scalar") => Ok(parse(result).into_iter().collect()),
        Some(other) => Err(format!("unexpected result type `{other}`")),
        None => Err("the answer has no result type".into()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn values_of_every_series_and_nothing_from_junk() {
        let doc: serde_json::Value = serde_json::from_str(
            r#"{"resultType":"matrix","result":[
                {"metric":{"a":"1"},"values":[[1,"0.5"],[2,"NaN"],[3,"+Inf"],[4,"1.5"]]},
                {"metric":{"a":"2"},"values":[[1,"2"],[2,7],[3],"x"]}]}"#,
        )
        .unwrap();
        assert_eq!(values(&doc).unwrap(), vec![0.5, 1.5, 2.0]);
        assert!(values(&serde_json::json!({"resultType": "string"})).is_err());
        assert!(values(&serde_json::json!([])).is_err());
        assert!(
            values(&serde_json::json!({"resultType": "matrix", "result": 3}))
                .unwrap()
                .is_empty()
        );
    }

    #[test]
    fn at_most_about_300_points_and_a_step_of_at_least_one_second() {
        let w = Window::ending_now(Duration::from_secs(20));
        assert_eq!(w.step, 1);
        assert_eq!((w.end - w.start).whole_seconds(), 20);
        let w = Window::ending_now(Duration::from_secs(3600));
        assert_eq!(w.step, 12);
        assert!(3600 / w.step <= 300);
        let w = Window::ending_now(Duration::from_secs(30 * 86400));
        assert!(30 * 86400 / w.step <= 300);
    }
}
