//! The trace a burst's push belongs to: the flush continues the trace of the notification
//! that started the burst, and links those coalesced into it (a few: a long burst does not
//! grow its actor).

use opentelemetry::trace::SpanContext;

use super::SubState;
use crate::domain::UnixMillis;

/// Most notifications a flush links to besides the one it continues.
const MAX_LINKS: usize = 8;

/// The trace positions of the pending burst's notifications.
#[derive(Debug)]
pub(super) struct BurstTrace {
    /// The burst they belong to (its first notification's time).
    first_at: UnixMillis,
    /// The notification that started it.
    parent: SpanContext,
    links: Vec<SpanContext>,
}

/// After a notification was applied in `applied`: remember its trace for the burst's push.
pub(super) fn note(state: &mut SubState, applied: &tracing::Span) {
    let Some(burst) = state.copy.as_ref().and_then(|c| c.progress.burst) else {
        state.burst_trace = None;
        return;
    };
    let position = crate::telemetry::position(applied);
    if !position.is_valid() {
        return;
    }
    match state.burst_trace.as_deref_mut() {
        Some(trace) if trace.first_at == burst.first_at => {
            if trace.links.len() < MAX_LINKS && trace.parent != position {
                trace.links.push(position);
            }
        }
        _ => {
            state.burst_trace = Some(Box::new(BurstTrace {
                first_at: burst.first_at,
                parent: position,
                links: Vec::new(),
            }));
        }
    }
}

/// The span of a push of the burst that began at `first_at`, in its notifications' trace.
pub(super) fn flush_span(state: &SubState, first_at: UnixMillis) -> tracing::Span {
    if !crate::telemetry::exporting() {
        return tracing::Span::none();
    }
    // Its own root unless the burst's trace is known (not under ractor's actor span).
    let span = tracing::info_span!(
        parent: None,
        "subscription.flush",
        registration = %state.id,
        trace_id = tracing::field::Empty,
    );
    if let Some(trace) = state
        .burst_trace
        .as_deref()
        .filter(|t| t.first_at == first_at)
    {
        crate::telemetry::continue_from(&span, &trace.parent, &trace.links);
    }
    crate::telemetry::stamp_trace_id(&span);
    span
}
