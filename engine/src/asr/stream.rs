//! Streaming transcription of one session: utterances cut at pauses are transcribed as soon as
//! they end (finals), and the utterance in progress is re-decoded every ~0.7 s for captions
//! (partials) stabilised with local agreement, so that shown words do not flicker.
//!
//! [`StreamingTranscriber`] is a pure state machine: audio and VAD events in, decode requests
//! out, results in, transcript events out. Whoever drives it (a session task, the CLI, a test)
//! sends the requests to a [`Transcriber`](super::Transcriber) and feeds the results back.

use std::collections::BTreeMap;
use std::sync::Arc;

use serde::Serialize;

use super::segmenter::{Segmenter, SegmenterConfig};
use super::{AsrError, CancelToken, DecodeOptions, Segment, join_text};
use crate::audio::{TARGET_RATE, VadEvent};
use crate::text::normalize;

/// Settings of the streaming transcriber.
#[derive(Debug, Clone)]
pub struct StreamConfig {
    /// Where utterances are cut.
    pub segmenter: SegmenterConfig,
    /// New audio needed before the next partial caption.
    pub partial_interval_s: f64,
    /// No partials at all (batch use, or a saturated machine).
    pub partials: bool,
    /// Shortest speech worth decoding (clicks and breaths are shorter).
    pub min_utterance_s: f64,
    /// Vocabulary prompt for the decoder.
    pub prompt: Option<Arc<str>>,
    /// Share of one core that one stream's partial captions may use: partials come every
    /// `partial_interval_s`, or less often when they cost more (their measured decode time
    /// divided by this share), so that captions never crowd out finals or other sessions.
    pub partial_cpu_share: f64,
    /// Start decoding an utterance as soon as its speech stops, before the pause is long
    /// enough to cut it; if no speech follows, that decode is the final, so a final costs
    /// little or no time after the cut.
    pub speculative_finals: bool,
}

impl Default for StreamConfig {
    fn default() -> Self {
        StreamConfig {
            segmenter: SegmenterConfig::default(),
            partial_interval_s: 0.7,
            partials: true,
            min_utterance_s: 0.3,
            prompt: None,
            speculative_finals: true,
            partial_cpu_share: 0.2,
        }
    }
}

/// A decode the driver must run.
#[derive(Debug)]
pub struct AsrRequest {
    /// Identifies the request when its result comes back.
    pub id: u64,
    /// Final or partial.
    pub kind: super::pool::JobKind,
    /// The utterance it belongs to.
    pub utterance: u64,
    /// The audio.
    pub samples: Vec<f32>,
    /// Decoder options.
    pub options: DecodeOptions,
}

/// What the transcript gained.
#[derive(Debug, Clone, PartialEq, Serialize)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub enum TranscriptEvent {
    /// A caption of the utterance in progress: `stable` only ever grows within an utterance.
    Partial {
        /// The utterance.
        utterance: u64,
        /// Words two consecutive hypotheses agreed on; never retracted.
        stable: String,
        /// The latest hypothesis beyond the stable words; may change.
        unstable: String,
        /// How much of the utterance's audio the caption covers (session clock, seconds).
        audio_end_s: f64,
    },
    /// The text of a finished utterance, emitted once, in utterance order, never changed.
    Final {
        /// The utterance.
        utterance: u64,
        /// The text.
        text: String,
        /// Segments on the session clock.
        segments: Vec<Segment>,
        /// Utterance start (session clock, seconds).
        start_s: f64,
        /// Utterance end (session clock, seconds).
        end_s: f64,
        /// Cut at the length limit rather than at a pause.
        forced: bool,
    },
}

#[derive(Debug)]
struct OpenUtterance {
    id: u64,
    /// Stable words from local agreement.
    stable: Vec<String>,
    /// The previous partial hypothesis.
    previous: Vec<String>,
    /// Audio position (samples) of the last partial request.
    last_partial_at: usize,
}

#[derive(Debug)]
struct PendingFinal {
    start_s: f64,
    end_s: f64,
    forced: bool,
    result: Option<Result<Vec<Segment>, AsrError>>,
}

/// One session's streaming transcription state.
#[derive(Debug)]
pub struct StreamingTranscriber {
    config: StreamConfig,
    segmenter: Segmenter,
    /// Audio kept from `buffer_start` (session samples) on.
    buffer: Vec<f32>,
    buffer_start: usize,
    /// Session samples received.
    total: usize,
    next_request: u64,
    next_utterance: u64,
    open: Option<OpenUtterance>,
    /// Partials in flight by request id.
    partials_in_flight: BTreeMap<u64, PartialInFlight>,
    /// Request id → utterance id, for finals in flight.
    finals_in_flight: BTreeMap<u64, u64>,
    /// Finals by utterance, emitted strictly in order.
    pending_finals: BTreeMap<u64, PendingFinal>,
    next_final_to_emit: u64,
    /// A decode of the open utterance started when its speech stopped.
    speculation: Option<Speculation>,
    /// Recent cost of one partial decode, seconds (moving average).
    partial_cost_s: f64,
    /// Captions made during `push`, handed out by `drain_ready`.
    ready_captions: Vec<TranscriptEvent>,
}

/// A caption decode in flight.
#[derive(Debug)]
struct PartialInFlight {
    utterance: u64,
    /// Session sample the audio it decodes ends at.
    audio_end: usize,
    /// Calls it off once its result can no longer be shown.
    cancel: CancelToken,
    /// A speculative final that speech overtook: while speech stops and starts it is the only
    /// caption source, so a new speculation does not call it off.
    was_speculation: bool,
}

/// A decode started at a speech end, which becomes the utterance's final if no speech follows
/// before the cut.
#[derive(Debug)]
struct Speculation {
    request: u64,
    utterance: u64,
    /// Audio (samples) it covers, from the open utterance's start.
    audio_end: usize,
    /// Calls it off if it is not used after all.
    cancel: CancelToken,
    /// Its result, once back.
    result: Option<Result<Vec<Segment>, AsrError>>,
}

fn hypothesis_words(segments: &[Segment]) -> Vec<String> {
    join_text(segments)
        .split_whitespace()
        .map(str::to_string)
        .collect()
}

impl StreamingTranscriber {
    /// A transcriber for a new session.
    pub fn new(config: StreamConfig) -> Self {
        StreamingTranscriber {
            segmenter: Segmenter::new(config.segmenter),
            config,
            buffer: Vec::new(),
            buffer_start: 0,
            total: 0,
            next_request: 0,
            next_utterance: 0,
            open: None,
            partials_in_flight: BTreeMap::new(),
            finals_in_flight: BTreeMap::new(),
            pending_finals: BTreeMap::new(),
            next_final_to_emit: 0,
            speculation: None,
            partial_cost_s: 0.0,
            ready_captions: Vec::new(),
        }
    }

    /// Tells the transcriber what the decode of `request` cost (compute seconds), so that
    /// partial captions keep to their share of the CPU. Call before [`Self::on_result`].
    pub fn observe_cost(&mut self, request: u64, compute_s: f64) {
        if self.partials_in_flight.contains_key(&request)
            && compute_s.is_finite()
            && compute_s > 0.0
        {
            self.partial_cost_s = if self.partial_cost_s == 0.0 {
                compute_s
            } else {
                0.7 * self.partial_cost_s + 0.3 * compute_s
            };
        }
    }

    /// Changes the share of one core that this stream's partial captions may use (see
    /// [`StreamConfig::partial_cpu_share`]); a server lowers it as more sessions share the
    /// machine, so that captions of many sessions never crowd out their finals.
    pub fn set_partial_cpu_share(&mut self, share: f64) {
        if share.is_finite() {
            self.config.partial_cpu_share = share.max(0.0);
        }
    }

    /// Turns speculative finals (see [`StreamConfig::speculative_finals`]) on or off from now
    /// on: a speculation is a whole-utterance decode at every short stop of the speech, worth
    /// it only while a worker is free for it.
    pub fn set_speculative_finals(&mut self, on: bool) {
        self.config.speculative_finals = on;
    }

    /// Changes the vocabulary prompt of the decodes asked for from now on (a new question
    /// brings its own domain terms).
    pub fn set_prompt(&mut self, prompt: Option<Arc<str>>) {
        self.config.prompt = prompt;
    }

    /// Seconds of new audio between partial captions at the current decode cost.
    pub fn partial_interval_s(&self) -> f64 {
        let share = self.config.partial_cpu_share;
        let by_cost = if share > 0.0 {
            self.partial_cost_s / share
        } else {
            0.0
        };
        self.config.partial_interval_s.max(by_cost)
    }

    /// Session audio received so far, seconds.
    pub fn now_s(&self) -> f64 {
        self.total as f64 / f64::from(TARGET_RATE)
    }

    /// Whether any final is still being decoded.
    pub fn finals_pending(&self) -> bool {
        !self.pending_finals.is_empty()
    }

    /// Whether an utterance is open (speech not yet cut).
    pub fn utterance_open(&self) -> bool {
        self.segmenter.is_open()
    }

    /// Requests in flight (finals + partials).
    pub fn in_flight(&self) -> usize {
        self.partials_in_flight.len() + self.finals_in_flight.len()
    }

    fn options(&self, cancel: CancelToken) -> DecodeOptions {
        DecodeOptions {
            prompt: self.config.prompt.as_deref().map(str::to_string),
            full_window: false,
            cancel,
        }
    }

    /// Calls off the caption decodes of `utterance` in flight (all of them, or only those that
    /// were not speculations), so that a core is not spent on results nobody will see. They
    /// stay listed until their (cancelled) results come back.
    fn cancel_partials(&mut self, utterance: u64, including_speculations: bool) {
        for partial in self.partials_in_flight.values() {
            if partial.utterance == utterance
                && (including_speculations || !partial.was_speculation)
            {
                partial.cancel.cancel();
            }
        }
    }

    fn slice(&self, start: usize, end: usize) -> &[f32] {
        let s = start
            .saturating_sub(self.buffer_start)
            .min(self.buffer.len());
        let e = end.saturating_sub(self.buffer_start).min(self.buffer.len());
        &self.buffer[s..e.max(s)]
    }

    /// Pushes 16 kHz audio and the VAD events decided on it; returns decodes to run.
    pub fn push(&mut self, audio: &[f32], events: &[VadEvent]) -> Vec<AsrRequest> {
        self.buffer.extend_from_slice(audio);
        self.total += audio.len();
        let mut requests = Vec::new();
        for e in events {
            // A pause that ended inside this push may already have closed an utterance.
            let at_s = match e {
                VadEvent::SpeechStart { at_s } | VadEvent::SpeechEnd { at_s } => *at_s,
            };
            while let Some(span) = self.segmenter.poll(at_s) {
                self.close_utterance(span, &mut requests);
            }
            self.segmenter.on_event(*e);
            match e {
                VadEvent::SpeechStart { .. } => self.abandon_speculation(),
                VadEvent::SpeechEnd { .. } => self.speculate(&mut requests),
            }
        }
        let now = self.now_s();
        while let Some(span) = self.segmenter.poll(now) {
            self.close_utterance(span, &mut requests);
        }
        if self.segmenter.is_open() && self.open.is_none() {
            self.open = Some(OpenUtterance {
                id: self.next_utterance,
                stable: Vec::new(),
                previous: Vec::new(),
                last_partial_at: self.segmenter.open_start_sample().unwrap_or(self.total),
            });
            self.next_utterance += 1;
        }
        self.maybe_partial(&mut requests);
        self.trim();
        requests
    }

    /// Speech stopped: decode the open utterance now, in case the pause turns out long enough
    /// to end it.
    fn speculate(&mut self, requests: &mut Vec<AsrRequest>) {
        if !self.config.speculative_finals || self.speculation.is_some() {
            return;
        }
        let (Some(open), Some(start)) = (&self.open, self.segmenter.open_start_sample()) else {
            return;
        };
        let samples = self.slice(start, self.total).to_vec();
        if samples.len() < (self.config.min_utterance_s * f64::from(TARGET_RATE)) as usize {
            return;
        }
        let (id, utterance) = (self.next_request, open.id);
        self.next_request += 1;
        // A caption decode still running covers less audio than this one, whose result is the
        // caption if speech resumes: its core is better spent here.
        self.cancel_partials(utterance, false);
        let cancel = CancelToken::new();
        self.speculation = Some(Speculation {
            request: id,
            utterance,
            audio_end: self.total,
            cancel: cancel.clone(),
            result: None,
        });
        requests.push(AsrRequest {
            id,
            kind: super::pool::JobKind::Final,
            utterance,
            samples,
            options: self.options(cancel),
        });
    }

    /// Speech resumed: the speculative decode can no longer be the final. Its result is the
    /// newest caption (now, if it is back, or when it comes), so the next regular caption
    /// waits its interval from the audio it covered: at every short stop of the speech the
    /// stream has already paid for a whole-utterance decode.
    fn abandon_speculation(&mut self) {
        let Some(spec) = self.speculation.take() else {
            return;
        };
        if let Some(open) = self.open.as_mut().filter(|o| o.id == spec.utterance) {
            open.last_partial_at = open.last_partial_at.max(spec.audio_end);
        }
        match spec.result {
            None => {
                self.partials_in_flight.insert(
                    spec.request,
                    PartialInFlight {
                        utterance: spec.utterance,
                        audio_end: spec.audio_end,
                        cancel: spec.cancel,
                        was_speculation: true,
                    },
                );
            }
            Some(Ok(segments)) if self.config.partials => {
                if let Some(caption) = self.caption(spec.utterance, spec.audio_end, &segments) {
                    self.ready_captions.push(caption);
                }
            }
            Some(_) => {}
        }
    }

    /// The caption of the open utterance `utterance` from a decode of its audio up to
    /// `audio_end`, stabilised by local agreement with the previous one; `None` if that
    /// utterance has been cut since (the caption would be stale).
    fn caption(
        &mut self,
        utterance: u64,
        audio_end: usize,
        segments: &[Segment],
    ) -> Option<TranscriptEvent> {
        let open = self.open.as_mut().filter(|o| o.id == utterance)?;
        let hyp = hypothesis_words(segments);
        let agreed = hyp
            .iter()
            .zip(&open.previous)
            .take_while(|(a, b)| normalize(a) == normalize(b))
            .count();
        if agreed > open.stable.len() {
            let extra: Vec<String> = hyp[open.stable.len()..agreed].to_vec();
            open.stable.extend(extra);
        }
        let unstable = if hyp.len() > open.stable.len() {
            hyp[open.stable.len()..].join(" ")
        } else {
            String::new()
        };
        open.previous = hyp;
        Some(TranscriptEvent::Partial {
            utterance,
            stable: open.stable.join(" "),
            unstable,
            audio_end_s: audio_end as f64 / f64::from(TARGET_RATE),
        })
    }

    fn maybe_partial(&mut self, requests: &mut Vec<AsrRequest>) {
        if !self.config.partials {
            return;
        }
        // While a speculative final is decoding the pause, a caption would only repeat it.
        if self.speculation.is_some() {
            return;
        }
        let Some(open) = &self.open else { return };
        let interval = (self.partial_interval_s() * f64::from(TARGET_RATE)) as usize;
        let busy = self
            .partials_in_flight
            .values()
            .any(|p| p.utterance == open.id);
        if busy || self.total < open.last_partial_at + interval {
            return;
        }
        let Some(start) = self.segmenter.open_start_sample() else {
            return;
        };
        let (id, utterance, total) = (self.next_request, open.id, self.total);
        let samples = self.slice(start, total).to_vec();
        if samples.len() < (self.config.min_utterance_s * f64::from(TARGET_RATE)) as usize {
            return;
        }
        self.next_request += 1;
        let cancel = CancelToken::new();
        self.partials_in_flight.insert(
            id,
            PartialInFlight {
                utterance,
                audio_end: total,
                cancel: cancel.clone(),
                was_speculation: false,
            },
        );
        if let Some(open) = self.open.as_mut() {
            open.last_partial_at = total;
        }
        requests.push(AsrRequest {
            id,
            kind: super::pool::JobKind::Partial,
            utterance,
            samples,
            options: self.options(cancel),
        });
    }

    fn close_utterance(
        &mut self,
        span: super::segmenter::UtteranceSpan,
        requests: &mut Vec<AsrRequest>,
    ) {
        let utterance = match self.open.take() {
            Some(open) => open.id,
            None => {
                let id = self.next_utterance;
                self.next_utterance += 1;
                id
            }
        };
        // The utterance is cut: captions of it still decoding would be thrown away.
        self.cancel_partials(utterance, true);
        let samples = self.slice(span.start, span.end).to_vec();
        let pending = PendingFinal {
            start_s: span.start_s(),
            end_s: span.end_s(),
            forced: span.forced,
            result: None,
        };
        let speculation = self.speculation.take().and_then(|spec| {
            if spec.utterance == utterance && !span.forced {
                Some(spec)
            } else {
                // It does not cover what the final must: its result would be dropped.
                spec.cancel.cancel();
                None
            }
        });
        if let Some(spec) = speculation {
            // No speech since the speculative decode started: it is this utterance's final.
            match spec.result {
                Some(result) => {
                    self.pending_finals.insert(
                        utterance,
                        PendingFinal {
                            result: Some(result),
                            ..pending
                        },
                    );
                }
                None => {
                    self.finals_in_flight.insert(spec.request, utterance);
                    self.pending_finals.insert(utterance, pending);
                }
            }
            return;
        }
        if span.speech_s < self.config.min_utterance_s {
            // Too short to be words: resolved as empty without decoding.
            self.pending_finals.insert(
                utterance,
                PendingFinal {
                    result: Some(Ok(Vec::new())),
                    ..pending
                },
            );
            return;
        }
        let id = self.next_request;
        self.next_request += 1;
        self.finals_in_flight.insert(id, utterance);
        self.pending_finals.insert(utterance, pending);
        requests.push(AsrRequest {
            id,
            kind: super::pool::JobKind::Final,
            utterance,
            samples,
            options: self.options(CancelToken::new()),
        });
    }

    /// Drops audio nobody can ask for any more (before the open utterance's pre-roll).
    fn trim(&mut self) {
        let keep_from = match self.segmenter.open_start_sample() {
            Some(s) => s,
            None => self.total.saturating_sub(
                (self.config.segmenter.pre_roll_s * 2.0 * f64::from(TARGET_RATE)) as usize,
            ),
        };
        if keep_from > self.buffer_start + TARGET_RATE as usize {
            let cut = keep_from - self.buffer_start;
            self.buffer.drain(..cut);
            self.buffer_start = keep_from;
        }
    }

    /// Ends the stream: the open utterance becomes a final.
    pub fn finish(&mut self) -> Vec<AsrRequest> {
        let mut requests = Vec::new();
        if let Some(span) = self.segmenter.finish(self.now_s()) {
            self.close_utterance(span, &mut requests);
        }
        requests
    }

    /// Feeds a decode result back; returns the transcript events it completes.
    pub fn on_result(
        &mut self,
        request: u64,
        result: Result<Vec<Segment>, AsrError>,
    ) -> Vec<TranscriptEvent> {
        let mut events = Vec::new();
        if let Some(spec) = self
            .speculation
            .as_mut()
            .filter(|spec| spec.request == request)
        {
            // Kept until the utterance is cut (then it is the final) or speech resumes.
            spec.result = Some(result);
            return events;
        }
        if let Some(PartialInFlight {
            utterance,
            audio_end,
            ..
        }) = self.partials_in_flight.remove(&request)
        {
            if let Ok(segments) = result {
                events.extend(self.caption(utterance, audio_end, &segments));
            }
            return events;
        }
        if let Some(utterance) = self.finals_in_flight.remove(&request)
            && let Some(p) = self.pending_finals.get_mut(&utterance)
        {
            p.result = Some(result);
        }
        self.emit_ready_finals(&mut events);
        events
    }

    /// Emits what `push` made ready without a decode: a caption from a speculative decode that
    /// was back before speech resumed, and finals that are complete and next in order (empty
    /// ones need no decoding). Call it after every `push`.
    pub fn drain_ready(&mut self) -> Vec<TranscriptEvent> {
        let mut events = std::mem::take(&mut self.ready_captions);
        self.emit_ready_finals(&mut events);
        events
    }

    fn emit_ready_finals(&mut self, events: &mut Vec<TranscriptEvent>) {
        while let Some(p) = self.pending_finals.get(&self.next_final_to_emit) {
            if p.result.is_none() {
                break;
            }
            let utterance = self.next_final_to_emit;
            let Some(p) = self.pending_finals.remove(&utterance) else {
                break;
            };
            self.next_final_to_emit += 1;
            let segments = match p.result {
                Some(Ok(segs)) => segs
                    .into_iter()
                    .map(|mut s| {
                        s.start_s += p.start_s;
                        s.end_s = (s.end_s + p.start_s).min(p.end_s);
                        s
                    })
                    .collect::<Vec<_>>(),
                Some(Err(e)) => {
                    tracing::error!(utterance, error = %e, "final transcription failed");
                    Vec::new()
                }
                None => Vec::new(),
            };
            events.push(TranscriptEvent::Final {
                utterance,
                text: join_text(&segments),
                segments,
                start_s: p.start_s,
                end_s: p.end_s,
                forced: p.forced,
            });
        }
        // Utterance ids with no pending entry (none were ever created for them) are skipped.
        while !self.pending_finals.contains_key(&self.next_final_to_emit)
            && self.next_final_to_emit < self.next_utterance
            && self
                .open
                .as_ref()
                .is_none_or(|o| o.id != self.next_final_to_emit)
        {
            self.next_final_to_emit += 1;
            if let Some(p) = self.pending_finals.get(&self.next_final_to_emit)
                && p.result.is_none()
            {
                break;
            }
        }
    }

    /// Forgets everything (a new session).
    pub fn reset(&mut self) {
        *self = StreamingTranscriber::new(self.config.clone());
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::asr::pool::JobKind;

    fn seg(text: &str) -> Segment {
        Segment {
            start_s: 0.0,
            end_s: 1.0,
            text: text.into(),
            no_speech_prob: 0.0,
        }
    }

    fn speech(t: &mut StreamingTranscriber, seconds: f64) -> Vec<AsrRequest> {
        let n = (seconds * 16_000.0) as usize;
        t.push(&vec![0.1; n], &[])
    }

    fn assert_one_final(events: &[TranscriptEvent], expected: &str) {
        assert!(
            matches!(events, [TranscriptEvent::Final { text, .. }] if text == expected),
            "{events:?}"
        );
    }

    /// Speech stops now (0.1 s of silence follows): the speculative final asked for, if any.
    fn stop_now(t: &mut StreamingTranscriber) -> Option<AsrRequest> {
        let now = t.now_s();
        t.push(&vec![0.0; 1_600], &[VadEvent::SpeechEnd { at_s: now }])
            .into_iter()
            .find(|r| r.kind == JobKind::Final)
    }

    /// Opens an utterance at 1.0 s and speaks for a second: returns the caption asked for.
    fn first_caption(t: &mut StreamingTranscriber) -> AsrRequest {
        let mut reqs = t.push(&vec![0.0; 16_000], &[VadEvent::SpeechStart { at_s: 1.0 }]);
        reqs.extend(speech(t, 1.0));
        reqs.into_iter()
            .find(|r| r.kind == JobKind::Partial)
            .expect("a caption while speaking")
    }

    /// Opens an utterance at 1.0 s, speaks until 2.5 s, and stops: returns the speculative
    /// final request issued at the speech end.
    fn speak_then_stop(t: &mut StreamingTranscriber) -> AsrRequest {
        t.push(&vec![0.0; 16_000], &[VadEvent::SpeechStart { at_s: 1.0 }]);
        speech(t, 1.5);
        let reqs = t.push(&vec![0.0; 1_600], &[VadEvent::SpeechEnd { at_s: 2.5 }]);
        reqs.into_iter()
            .find(|r| r.kind == JobKind::Final)
            .expect("a speculative final at the speech end")
    }

    #[test]
    fn a_speculative_decode_becomes_the_final_when_no_speech_follows() {
        let mut t = StreamingTranscriber::new(StreamConfig::default());
        let spec = speak_then_stop(&mut t);
        // The pause grows long enough to cut the utterance: no second final is asked for.
        let reqs = t.push(&vec![0.0; 16_000], &[]);
        assert!(
            reqs.iter().all(|r| r.kind != JobKind::Final),
            "the speculative decode is reused"
        );
        let events = t.on_result(spec.id, Ok(vec![seg("The patient needs an ECG.")]));
        assert_one_final(&events, "The patient needs an ECG.");
    }

    #[test]
    fn a_new_prompt_applies_to_the_decodes_asked_for_after_it() {
        let mut t = StreamingTranscriber::new(StreamConfig::default());
        assert_eq!(speak_then_stop(&mut t).options.prompt, None);
        t.set_prompt(Some("troponin, STEMI".into()));
        t.push(&vec![0.0; 16_000], &[]);
        let now = t.now_s();
        t.push(&vec![0.0; 1_600], &[VadEvent::SpeechStart { at_s: now }]);
        speech(&mut t, 1.5);
        let now = t.now_s();
        let requests = t.push(&vec![0.0; 1_600], &[VadEvent::SpeechEnd { at_s: now }]);
        assert!(!requests.is_empty());
        for r in requests {
            assert_eq!(r.options.prompt.as_deref(), Some("troponin, STEMI"));
        }
    }

    #[test]
    fn without_speculation_the_final_waits_for_the_cut() {
        let mut t = StreamingTranscriber::new(StreamConfig::default());
        t.set_speculative_finals(false);
        t.push(&vec![0.0; 16_000], &[VadEvent::SpeechStart { at_s: 1.0 }]);
        speech(&mut t, 1.5);
        let reqs = t.push(&vec![0.0; 1_600], &[VadEvent::SpeechEnd { at_s: 2.5 }]);
        assert!(
            reqs.iter().all(|r| r.kind != JobKind::Final),
            "no decode at the speech end"
        );
        let reqs = t.push(&vec![0.0; 16_000], &[]);
        assert_eq!(
            reqs.iter().filter(|r| r.kind == JobKind::Final).count(),
            1,
            "the final is asked for when the pause cuts the utterance"
        );
    }

    #[test]
    fn speech_after_a_speculative_decode_turns_it_into_a_caption() {
        let mut t = StreamingTranscriber::new(StreamConfig::default());
        let spec = speak_then_stop(&mut t);
        // The applicant goes on before the pause is long enough.
        t.push(&vec![0.1; 3_200], &[VadEvent::SpeechStart { at_s: 2.7 }]);
        let events = t.on_result(spec.id, Ok(vec![seg("The patient needs")]));
        assert!(
            matches!(&events[..], [TranscriptEvent::Partial { .. }]),
            "{events:?}"
        );
        let reqs = t.push(&vec![0.0; 16_000], &[VadEvent::SpeechEnd { at_s: 3.0 }]);
        let finals: Vec<u64> = reqs
            .iter()
            .filter(|r| r.kind == JobKind::Final)
            .map(|r| r.id)
            .collect();
        assert!(
            !finals.is_empty() && !finals.contains(&spec.id),
            "a fresh final: {finals:?}"
        );
    }

    #[test]
    fn captions_that_can_no_longer_be_shown_are_called_off() {
        let mut t = StreamingTranscriber::new(StreamConfig::default());
        let caption = first_caption(&mut t);
        assert!(!caption.options.cancel.is_cancelled());
        // Speech stops while the caption decodes: the speculative final covers more audio and
        // will be the caption if speech resumes, so the older caption is called off.
        let spec = stop_now(&mut t).expect("a speculative final");
        assert!(caption.options.cancel.is_cancelled());
        assert!(!spec.options.cancel.is_cancelled());
        // Its cancelled result is absorbed without an event.
        let cancelled = t.on_result(caption.id, Err(AsrError::cancelled_unstarted()));
        assert!(cancelled.is_empty(), "{cancelled:?}");

        // Speech resumes: the speculation becomes the caption and is not called off by the
        // next stop, which starts a new speculation beside it…
        let now = t.now_s();
        t.push(&vec![0.1; 8_000], &[VadEvent::SpeechStart { at_s: now }]);
        let spec2 = stop_now(&mut t).expect("a second speculative final");
        assert!(!spec.options.cancel.is_cancelled());
        // …but once the pause cuts the utterance, the old one can only be thrown away.
        let reqs = t.push(&vec![0.0; 16_000], &[]);
        assert!(reqs.iter().all(|r| r.kind != JobKind::Final), "{reqs:?}");
        assert!(spec.options.cancel.is_cancelled());
        assert!(!spec2.options.cancel.is_cancelled(), "the final is kept");
        assert!(
            t.on_result(spec.id, Err(AsrError::cancelled_unstarted()))
                .is_empty()
        );
        let events = t.on_result(spec2.id, Ok(vec![seg("The patient needs an ECG.")]));
        assert_one_final(&events, "The patient needs an ECG.");
    }

    #[test]
    fn a_speculative_decode_back_before_speech_resumes_is_the_newest_caption() {
        let mut t = StreamingTranscriber::new(StreamConfig {
            partial_interval_s: 1.0,
            ..StreamConfig::default()
        });
        // Speech from 1.0 s (the utterance opens at 0.75 s with its pre-roll) to 1.2 s.
        t.push(&vec![0.0; 16_000], &[VadEvent::SpeechStart { at_s: 1.0 }]);
        assert!(speech(&mut t, 0.2).is_empty(), "too soon for a caption");
        let spec = t
            .push(&vec![0.0; 1_600], &[VadEvent::SpeechEnd { at_s: 1.2 }])
            .into_iter()
            .find(|r| r.kind == JobKind::Final)
            .expect("a speculative final");
        assert!(
            t.on_result(spec.id, Ok(vec![seg("The patient")]))
                .is_empty(),
            "kept as the possible final"
        );
        // Speech resumes at 1.35 s: the decode that is already back becomes the caption.
        t.push(&vec![0.1; 800], &[VadEvent::SpeechStart { at_s: 1.35 }]);
        let events = t.drain_ready();
        assert!(
            matches!(&events[..], [TranscriptEvent::Partial { unstable, .. }] if unstable == "The patient"),
            "{events:?}"
        );
        // The next caption waits its interval from the audio that decode covered (1.3 s), not
        // from the start of the utterance.
        assert!(
            speech(&mut t, 0.5).is_empty(),
            "a caption 0.55 s after the last one"
        );
        assert!(
            speech(&mut t, 0.5)
                .iter()
                .any(|r| r.kind == JobKind::Partial),
            "a caption 1.05 s after it"
        );
    }

    #[test]
    fn costly_partials_come_less_often() {
        let mut t = StreamingTranscriber::new(StreamConfig::default());
        assert!((t.partial_interval_s() - 0.7).abs() < 1e-9);
        t.push(&vec![0.0; 16_000], &[VadEvent::SpeechStart { at_s: 1.0 }]);
        let partial = speech(&mut t, 1.0)
            .into_iter()
            .find(|r| r.kind == JobKind::Partial)
            .expect("partial");
        // Half a second of compute per caption at a 20 % share: one every 2.5 s of audio.
        t.observe_cost(partial.id, 0.5);
        assert!(
            (t.partial_interval_s() - 2.5).abs() < 1e-9,
            "{}",
            t.partial_interval_s()
        );
        // Finals' costs do not count.
        t.observe_cost(999, 10.0);
        assert!((t.partial_interval_s() - 2.5).abs() < 1e-9);
    }

    #[test]
    fn stable_words_only_grow_and_finals_come_in_order() {
        let mut t = StreamingTranscriber::new(StreamConfig::default());
        let partial = first_caption(&mut t);
        let e = t.on_result(partial.id, Ok(vec![seg("the patient has")]));
        assert!(matches!(&e[0], TranscriptEvent::Partial { stable, .. } if stable.is_empty()));
        let p2 = speech(&mut t, 0.8)
            .into_iter()
            .find(|r| r.kind == JobKind::Partial)
            .expect("p2");
        let e = t.on_result(p2.id, Ok(vec![seg("the patient has chest pain")]));
        assert!(
            matches!(&e[0], TranscriptEvent::Partial { stable, .. } if stable == "the patient has")
        );
        // A later hypothesis that disagrees never retracts stable words.
        let p3 = speech(&mut t, 0.8)
            .into_iter()
            .find(|r| r.kind == JobKind::Partial)
            .expect("p3");
        let e = t.on_result(p3.id, Ok(vec![seg("a patient had chest pains")]));
        assert!(
            matches!(&e[0], TranscriptEvent::Partial { stable, .. } if stable == "the patient has")
        );

        // End of speech, pause: a final for utterance 0; a second utterance follows.
        let now = t.now_s();
        let mut reqs = t.push(&vec![0.0; 8_000], &[VadEvent::SpeechEnd { at_s: now }]);
        reqs.extend(t.push(
            &vec![0.0; 16_000],
            &[VadEvent::SpeechStart { at_s: now + 1.2 }],
        ));
        reqs.extend(speech(&mut t, 1.0));
        let now = t.now_s();
        reqs.extend(t.push(&vec![0.0; 16_000], &[VadEvent::SpeechEnd { at_s: now }]));
        let finals: Vec<&AsrRequest> = reqs.iter().filter(|r| r.kind == JobKind::Final).collect();
        assert_eq!(finals.len(), 2);
        // The second final finishes first: nothing is emitted until the first is in.
        assert!(
            t.on_result(finals[1].id, Ok(vec![seg("second")]))
                .is_empty()
        );
        let e = t.on_result(finals[0].id, Ok(vec![seg("first")]));
        let texts: Vec<&str> = e
            .iter()
            .filter_map(|e| match e {
                TranscriptEvent::Final { text, .. } => Some(text.as_str()),
                TranscriptEvent::Partial { .. } => None,
            })
            .collect();
        assert_eq!(texts, ["first", "second"]);
    }

    #[test]
    fn stale_partials_are_ignored_and_clicks_are_not_decoded() {
        let mut t = StreamingTranscriber::new(StreamConfig::default());
        let mut reqs = t.push(&vec![0.0; 1_600], &[VadEvent::SpeechStart { at_s: 0.05 }]);
        reqs.extend(speech(&mut t, 1.0));
        let partial = reqs
            .iter()
            .find(|r| r.kind == JobKind::Partial)
            .expect("partial")
            .id;
        let now = t.now_s();
        let reqs = t.push(&vec![0.0; 16_000], &[VadEvent::SpeechEnd { at_s: now }]);
        assert!(t.on_result(partial, Ok(vec![seg("late words")])).is_empty());
        let fin = reqs
            .iter()
            .find(|r| r.kind == JobKind::Final)
            .expect("final");
        assert!(!t.on_result(fin.id, Ok(vec![seg("words")])).is_empty());

        // A 0.1 s click: its final resolves empty without a decode.
        let now = t.now_s();
        let reqs = t.push(
            &vec![0.0; 100],
            &[
                VadEvent::SpeechStart { at_s: now },
                VadEvent::SpeechEnd { at_s: now + 0.0 },
            ],
        );
        let reqs2 = t.push(&vec![0.0; 16_000], &[]);
        assert!(reqs.iter().chain(&reqs2).all(|r| r.kind != JobKind::Final));
        let e = t.drain_ready();
        assert!(
            matches!(&e[..], [TranscriptEvent::Final { text, .. }] if text.is_empty()),
            "{e:?}"
        );
    }
}
