//! OTLP export of the metrics and events, to an OpenTelemetry collector
//! (and from there Azure Monitor).
//!
//! The daemon never waits on it: the supervisor hands over each new
//! snapshot (a pointer swap) and each event (a push onto a bounded queue),
//! and one task exports. Metrics are read from the latest snapshot when
//! they are collected, so a collector that is away costs no memory for
//! them; events wait in the queue, oldest dropped first when it is full,
//! counted (`unitwatch_telemetry_dropped_total`) and logged once per
//! episode. A failing export is logged once until it works again, and
//! retried with a growing delay (events) or at the next interval (metrics).

mod instruments;
pub mod resource;
pub mod settings;

use std::collections::VecDeque;
use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex, RwLock, Weak};
use std::time::{Duration, SystemTime};

use opentelemetry::logs::{AnyValue, LogRecord as _, Logger as _, LoggerProvider as _, Severity};
use opentelemetry::metrics::MeterProvider as _;
use opentelemetry::InstrumentationScope;
use opentelemetry_otlp::{WithExportConfig, WithHttpConfig, WithTonicConfig};
use opentelemetry_sdk::error::OTelSdkResult;
use opentelemetry_sdk::logs::{LogBatch, LogExporter as _, SdkLogger, SdkLoggerProvider};
use opentelemetry_sdk::metrics::data::ResourceMetrics;
use opentelemetry_sdk::metrics::exporter::PushMetricExporter as _;
use opentelemetry_sdk::metrics::reader::MetricReader;
use opentelemetry_sdk::metrics::{
    InstrumentKind, ManualReader, Pipeline, SdkMeterProvider, Temporality,
};
use opentelemetry_sdk::Resource;
use tokio::sync::Notify;

use crate::config::OtlpProtocol;
use crate::events::{Event, EventSink, Severity as EventSeverity};
use crate::snapshot::{Snapshot, TelemetryView};

pub use instruments::metrics;
pub use settings::Settings;

/// Why the export could not be set up. Export failures at run time are not
/// errors of this kind: they are retried and shown in the snapshot.
#[derive(Debug, thiserror::Error)]
pub enum TelemetryError {
    #[error("{path}: cannot read telemetry headers: {source}")]
    HeadersRead {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("{path}:{line}: telemetry headers: {message}")]
    HeadersInvalid {
        path: PathBuf,
        line: usize,
        message: String,
    },
    #[error("environment variable {var}: {message}")]
    Env { var: String, message: String },
    #[error("cannot set up the OTLP {signal} exporter for {url}: {message}")]
    Exporter {
        signal: &'static str,
        url: String,
        message: String,
    },
    #[error("OTLP export to {url} failed: {message}")]
    Export { url: String, message: String },
}

/// One event waiting for export.
#[derive(Debug, Clone)]
struct Queued {
    /// Increasing: tells what was sent from what came (or went) meanwhile.
    seq: u64,
    at: SystemTime,
    event: Event,
}

/// What the supervisor and the export task share.
pub struct Shared {
    snapshot: RwLock<Option<Arc<Snapshot>>>,
    queue: Mutex<VecDeque<Queued>>,
    queue_size: usize,
    dropped: AtomicU64,
    next_seq: AtomicU64,
    /// Set while an overflow episode is under way (one warning each).
    dropping: AtomicBool,
    wake: Notify,
    stop: Notify,
    status: Mutex<TelemetryView>,
}

impl Shared {
    fn new(settings: &Settings, snapshot: Option<Arc<Snapshot>>) -> Shared {
        Shared {
            snapshot: RwLock::new(snapshot),
            queue: Mutex::new(VecDeque::new()),
            queue_size: settings.queue_size,
            dropped: AtomicU64::new(0),
            next_seq: AtomicU64::new(0),
            dropping: AtomicBool::new(false),
            wake: Notify::new(),
            stop: Notify::new(),
            status: Mutex::new(TelemetryView {
                protocol: settings.protocol.as_str().into(),
                endpoint: settings.endpoint().into(),
                ..Default::default()
            }),
        }
    }

    fn snapshot(&self) -> Option<Arc<Snapshot>> {
        self.snapshot
            .read()
            .unwrap_or_else(|e| e.into_inner())
            .clone()
    }
}

/// The queue, as the events module sees it.
struct Sink(Weak<Shared>);

impl EventSink for Sink {
    fn event(&self, event: &Event, at: SystemTime) {
        let Some(shared) = self.0.upgrade() else {
            return;
        };
        {
            let mut q = shared.queue.lock().unwrap_or_else(|e| e.into_inner());
            if q.len() >= shared.queue_size {
                q.pop_front();
                shared.dropped.fetch_add(1, Ordering::Relaxed);
                if !shared.dropping.swap(true, Ordering::Relaxed) {
                    log::warn!(
                        "telemetry: {} events wait for the collector; dropping the oldest (counted in unitwatch_telemetry_dropped_total, logged once until the queue drains)",
                        shared.queue_size
                    );
                }
            }
            q.push_back(Queued {
                seq: shared.next_seq.fetch_add(1, Ordering::Relaxed),
                at,
                event: event.clone(),
            });
        }
        shared.wake.notify_one();
    }
}

/// A [`ManualReader`] the provider and the export task share: the task
/// decides when to collect.
#[derive(Debug, Clone)]
struct SharedReader(Arc<ManualReader>);

impl MetricReader for SharedReader {
    fn register_pipeline(&self, pipeline: Weak<Pipeline>) {
        self.0.register_pipeline(pipeline)
    }
    fn collect(&self, rm: &mut ResourceMetrics) -> OTelSdkResult {
        self.0.collect(rm)
    }
    fn force_flush(&self) -> OTelSdkResult {
        self.0.force_flush()
    }
    fn shutdown_with_timeout(&self, timeout: Duration) -> OTelSdkResult {
        self.0.shutdown_with_timeout(timeout)
    }
    fn temporality(&self, kind: InstrumentKind) -> Temporality {
        self.0.temporality(kind)
    }
}

/// Exporters, provider and instruments for one resource.
struct Exporters {
    settings: Settings,
    reader: SharedReader,
    _provider: SdkMeterProvider,
    _instruments: instruments::Instruments,
    metrics: opentelemetry_otlp::MetricExporter,
    logs: opentelemetry_otlp::LogExporter,
    logger: SdkLogger,
    _log_provider: SdkLoggerProvider,
    scope: InstrumentationScope,
}

fn exporter_error(signal: &'static str, url: &str, e: impl std::fmt::Display) -> TelemetryError {
    TelemetryError::Exporter {
        signal,
        url: url.to_string(),
        message: e.to_string(),
    }
}

impl Exporters {
    fn new(
        settings: Settings,
        resource: Resource,
        shared: &Arc<Shared>,
    ) -> Result<Self, TelemetryError> {
        let s = &settings;
        let (metrics, mut logs) = match s.protocol {
            OtlpProtocol::HttpProtobuf => {
                let metrics = opentelemetry_otlp::MetricExporter::builder()
                    .with_http()
                    .with_endpoint(&s.metrics_url)
                    .with_timeout(s.timeout)
                    .with_headers(s.headers.0.clone());
                let logs = opentelemetry_otlp::LogExporter::builder()
                    .with_http()
                    .with_endpoint(&s.logs_url)
                    .with_timeout(s.timeout)
                    .with_headers(s.headers.0.clone());
                // Plain http:// (a collector on the VM): one hyper client for
                // both signals, no TLS stack or root certificates in memory.
                // https:// gets reqwest.
                let plain: Option<Arc<dyn opentelemetry_http::HttpClient>> =
                    (s.metrics_url.starts_with("http://") && s.logs_url.starts_with("http://"))
                        .then(|| {
                            Arc::new(
                                opentelemetry_http::hyper::HyperClient::with_default_connector(
                                    s.timeout, None,
                                ),
                            ) as Arc<dyn opentelemetry_http::HttpClient>
                        });
                let (metrics, logs) = match plain {
                    Some(c) => (
                        metrics.with_shared_http_client(c.clone()),
                        logs.with_shared_http_client(c),
                    ),
                    None => (metrics, logs),
                };
                (
                    metrics
                        .build()
                        .map_err(|e| exporter_error("metrics", &s.metrics_url, e))?,
                    logs.build()
                        .map_err(|e| exporter_error("logs", &s.logs_url, e))?,
                )
            }
            OtlpProtocol::Grpc => {
                // Names and values were checked when the file was read.
                let metadata = || {
                    let mut h = axum::http::HeaderMap::new();
                    for (k, v) in &s.headers.0 {
                        if let (Ok(k), Ok(v)) = (
                            axum::http::HeaderName::from_bytes(k.as_bytes()),
                            axum::http::HeaderValue::from_str(v),
                        ) {
                            h.insert(k, v);
                        }
                    }
                    opentelemetry_otlp::tonic_types::metadata::MetadataMap::from_headers(h)
                };
                (
                    opentelemetry_otlp::MetricExporter::builder()
                        .with_tonic()
                        .with_endpoint(&s.metrics_url)
                        .with_timeout(s.timeout)
                        .with_metadata(metadata())
                        .build()
                        .map_err(|e| exporter_error("metrics", &s.metrics_url, e))?,
                    opentelemetry_otlp::LogExporter::builder()
                        .with_tonic()
                        .with_endpoint(&s.logs_url)
                        .with_timeout(s.timeout)
                        .with_metadata(metadata())
                        .build()
                        .map_err(|e| exporter_error("logs", &s.logs_url, e))?,
                )
            }
        };
        logs.set_resource(&resource);
        let reader = SharedReader(Arc::new(ManualReader::builder().build()));
        let provider = SdkMeterProvider::builder()
            .with_resource(resource.clone())
            .with_reader(reader.clone())
            .build();
        let scope = InstrumentationScope::builder("unitwatchd")
            .with_version(env!("CARGO_PKG_VERSION"))
            .build();
        let meter = provider.meter_with_scope(scope.clone());
        let instruments = instruments::register(&meter, shared);
        // A provider without processors: it only makes the records this
        // module queues and exports itself.
        let log_provider = SdkLoggerProvider::builder().with_resource(resource).build();
        let logger = log_provider.logger_with_scope(scope.clone());
        Ok(Exporters {
            settings,
            reader,
            _provider: provider,
            _instruments: instruments,
            metrics,
            logs,
            logger,
            _log_provider: log_provider,
            scope,
        })
    }

    async fn export_metrics(&self) -> Result<(), TelemetryError> {
        let mut rm = ResourceMetrics::default();
        self.reader
            .collect(&mut rm)
            .map_err(|e| TelemetryError::Export {
                url: self.settings.metrics_url.clone(),
                message: e.to_string(),
            })?;
        self.metrics
            .export(&rm)
            .await
            .map_err(|e| TelemetryError::Export {
                url: self.settings.metrics_url.clone(),
                message: e.to_string(),
            })
    }

    fn record(&self, q: &Queued) -> opentelemetry_sdk::logs::SdkLogRecord {
        let e = &q.event;
        let mut r = self.logger.create_log_record();
        r.set_timestamp(q.at);
        r.set_observed_timestamp(q.at);
        let (number, text) = match e.severity {
            EventSeverity::Info => (Severity::Info, "info"),
            EventSeverity::Warning => (Severity::Warn, "warning"),
            EventSeverity::Error => (Severity::Error, "error"),
            EventSeverity::Critical => (Severity::Fatal, "critical"),
        };
        r.set_severity_number(number);
        r.set_severity_text(text);
        r.set_event_name(e.kind.as_str());
        r.set_body(AnyValue::from(e.message.clone()));
        r.add_attribute("unitwatch.event", e.kind.as_str());
        r.add_attribute("unitwatch.severity", e.severity.as_str());
        if let Some(u) = &e.unit {
            r.add_attribute("unitwatch.unit", u.clone());
        }
        if let Some(c) = &e.check {
            r.add_attribute("unitwatch.check", c.clone());
        }
        if let Some(d) = e.delay_ms {
            r.add_attribute("unitwatch.delay_ms", d as i64);
        }
        r
    }

    async fn export_events(&self, events: &[Queued]) -> Result<(), TelemetryError> {
        let records: Vec<_> = events.iter().map(|q| self.record(q)).collect();
        let pairs: Vec<_> = records.iter().map(|r| (r, &self.scope)).collect();
        self.logs
            .export(LogBatch::new(&pairs))
            .await
            .map_err(|e| TelemetryError::Export {
                url: self.settings.logs_url.clone(),
                message: e.to_string(),
            })
    }
}

/// The running export. Dropping it stops the task.
pub struct Telemetry {
    shared: Arc<Shared>,
    task: tokio::task::JoinHandle<()>,
}

/// Events exported in one request, at most.
const BATCH: usize = 512;
/// Waits between event exports while the collector fails: 1, 2, 4 ... 60 s.
const RETRY_MAX: Duration = Duration::from_secs(60);

impl Telemetry {
    /// Starts the export task (on the current Tokio runtime) and routes
    /// events to it. The resource, Azure's included, is found by the task,
    /// so the daemon's start never waits on IMDS.
    pub fn start(settings: Settings) -> Telemetry {
        let shared = Arc::new(Shared::new(&settings, None));
        crate::events::set_sink(
            crate::events::Slot::Telemetry,
            Some(Arc::new(Sink(Arc::downgrade(&shared)))),
        );
        let task = tokio::spawn(run(settings, shared.clone()));
        Telemetry { shared, task }
    }

    /// Hands over the newest snapshot (what the next collection reads).
    pub fn update(&self, snap: Arc<Snapshot>) {
        *self
            .shared
            .snapshot
            .write()
            .unwrap_or_else(|e| e.into_inner()) = Some(snap);
    }

    /// How the export fares, for the snapshot.
    pub fn view(&self) -> TelemetryView {
        let mut v = self
            .shared
            .status
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .clone();
        v.dropped_total = self.shared.dropped.load(Ordering::Relaxed);
        v.queued_events = self.shared.queue.lock().map(|q| q.len()).unwrap_or(0);
        v
    }

    /// Stops taking events, now, and tells the task to export what is
    /// queued and the metrics one last time; the future it returns waits
    /// for that (at most 5 s, a dead collector's share). On a reload the
    /// daemon runs it on a task of its own, so that the loop never waits on
    /// a collector.
    pub fn stop(mut self) -> impl std::future::Future<Output = ()> + Send {
        crate::events::set_sink(crate::events::Slot::Telemetry, None);
        self.shared.stop.notify_one();
        async move {
            let _ = tokio::time::timeout(Duration::from_secs(5), &mut self.task).await;
        }
    }

    /// [`Telemetry::stop`], waited for: at the daemon's exit.
    pub async fn shutdown(self) {
        self.stop().await
    }
}

impl Drop for Telemetry {
    fn drop(&mut self) {
        self.task.abort();
    }
}

fn now_rfc3339() -> String {
    humantime::format_rfc3339_millis(SystemTime::now()).to_string()
}

/// Records one export's outcome; logs the first failure and the recovery.
fn note(shared: &Shared, settings: &Settings, result: &Result<(), TelemetryError>) {
    let mut st = shared.status.lock().unwrap_or_else(|e| e.into_inner());
    match result {
        Ok(()) => {
            st.exports_total += 1;
            st.last_success_at = Some(now_rfc3339());
            if st.last_error.take().is_some() {
                log::info!("telemetry: export to {} works again", settings.endpoint());
            }
        }
        Err(e) => {
            st.export_failures_total += 1;
            if st.last_error.is_none() {
                log::warn!("telemetry: {e}; retrying (logged once until it works again)");
            }
            st.last_error = Some(e.to_string());
        }
    }
}

/// Looks up the resource: IMDS only on an Azure VM, once.
async fn find_resource(settings: &Settings) -> Resource {
    let env = |k: &str| std::env::var(k).ok();
    let mut extra = Vec::new();
    if resource::is_azure(&settings.sys_dir) {
        match resource::azure_compute(&settings.imds_endpoint).await {
            Ok(c) => extra = c.attributes(),
            Err(e) => log::warn!(
                "telemetry: this is an Azure VM but its instance metadata could not be read ({e}); exporting without cloud.* attributes"
            ),
        }
    }
    resource::build(extra, &env)
}

async fn run(settings: Settings, shared: Arc<Shared>) {
    let resource = find_resource(&settings).await;
    let pipe = match Exporters::new(settings.clone(), resource, &shared) {
        Ok(p) => p,
        Err(e) => {
            log::error!("telemetry: {e}; no telemetry is exported");
            shared
                .status
                .lock()
                .unwrap_or_else(|e| e.into_inner())
                .last_error = Some(e.to_string());
            return;
        }
    };
    log::info!(
        "telemetry: exporting OTLP ({}) to {} every {}",
        settings.protocol.as_str(),
        settings.endpoint(),
        humantime::format_duration(settings.interval)
    );
    // The first metrics go out soon after start, so a new VM shows up at
    // once rather than after a whole interval.
    let mut next_metrics = tokio::time::Instant::now() + Duration::from_secs(1);
    let mut retry = Duration::ZERO;
    let mut next_events: Option<tokio::time::Instant> = None;
    loop {
        let events_due = async {
            match next_events {
                Some(t) => tokio::time::sleep_until(t).await,
                None => std::future::pending().await,
            }
        };
        tokio::select! {
            _ = tokio::time::sleep_until(next_metrics) => {
                let r = pipe.export_metrics().await;
                note(&shared, &settings, &r);
                next_metrics = tokio::time::Instant::now() + settings.interval;
            }
            _ = shared.wake.notified(), if next_events.is_none() => {
                // A short pause gathers a burst of events into one request.
                next_events = Some(tokio::time::Instant::now() + Duration::from_millis(200));
            }
            _ = events_due => {
                let ok = flush_events(&pipe, &shared, &settings).await;
                retry = if ok { Duration::ZERO } else { (retry * 2).clamp(Duration::from_secs(1), RETRY_MAX) };
                let left = !shared.queue.lock().unwrap_or_else(|e| e.into_inner()).is_empty();
                next_events = left.then(|| tokio::time::Instant::now() + retry.max(Duration::from_millis(200)));
            }
            _ = shared.stop.notified() => {
                let _ = flush_events(&pipe, &shared, &settings).await;
                note(&shared, &settings, &pipe.export_metrics().await);
                return;
            }
        }
    }
}

/// Exports queued events in batches until the queue is empty or an export
/// fails (the batch then stays queued). True when nothing failed.
async fn flush_events(pipe: &Exporters, shared: &Shared, settings: &Settings) -> bool {
    loop {
        let batch: Vec<Queued> = {
            let q = shared.queue.lock().unwrap_or_else(|e| e.into_inner());
            q.iter().take(BATCH).cloned().collect()
        };
        if batch.is_empty() {
            shared.dropping.store(false, Ordering::Relaxed);
            return true;
        }
        let r = pipe.export_events(&batch).await;
        let ok = r.is_ok();
        note(shared, settings, &r);
        if !ok {
            return false;
        }
        // Only what was sent leaves the queue: events queued meanwhile stay
        // (and some of the batch may have been dropped meanwhile).
        let last = batch.last().map_or(0, |b| b.seq);
        let mut q = shared.queue.lock().unwrap_or_else(|e| e.into_inner());
        while q.front().is_some_and(|f| f.seq <= last) {
            q.pop_front();
        }
    }
}

/// `unitwatchd check --otlp`: one export of `snap` (metrics and one event
/// saying so); Ok with the URLs when the collector accepted both.
pub async fn export_once(settings: Settings, snap: Snapshot) -> Result<String, TelemetryError> {
    let shared = Arc::new(Shared::new(&settings, Some(Arc::new(snap))));
    let resource = find_resource(&settings).await;
    let pipe = Exporters::new(settings.clone(), resource, &shared)?;
    pipe.export_metrics().await?;
    let event = Event::new(
        crate::events::Kind::CheckChanged,
        EventSeverity::Info,
        "unitwatchd check --otlp: a one-shot export",
    );
    pipe.export_events(&[Queued {
        seq: 0,
        at: SystemTime::now(),
        event,
    }])
    .await?;
    Ok(format!(
        "exported to {} ({}): metrics and one event accepted",
        settings.endpoint(),
        settings.protocol.as_str()
    ))
}

#[cfg(test)]
mod tests;
