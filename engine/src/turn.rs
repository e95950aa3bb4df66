//! Turn-taking: deciding that the applicant has finished answering.
//!
//! Interview answers are long and full of thinking pauses, so silence alone cannot end a turn.
//! [`TurnDetector`] combines three signals, all passed in with their session-clock times:
//!
//! * voice activity (VAD start/end),
//! * the final transcripts of the utterances (does the answer *sound* finished?),
//! * explicit ends: the client's "I'm done" button, or a spoken end phrase such as
//!   "that's my answer" as the last words.
//!
//! It reads no clock: the caller polls it with the current time on every audio push or timer
//! tick, and [`TurnDetector::next_deadline`] says when to tick next. Silence is measured from the
//! last voice end; no decision is taken while voice is active or while the final transcript of
//! the audio up to the last voice end is still being decoded, except for the client's button and
//! the safety timeouts ([`TurnConfig::max_silence_s`], [`TurnConfig::max_answer_s`]).

use serde::{Deserialize, Serialize};

/// Slack for comparing session times that were computed by adding durations.
const TIME_EPS: f64 = 1e-9;

/// Fewest words an answer needs to sound finished, unless it is a plain short reply such as
/// "Yes." or "I don't know.".
pub const MIN_FINISHED_WORDS: usize = 4;

/// The longest answer (in words) that can count as a plain short reply.
const MAX_SHORT_REPLY_WORDS: usize = 6;

/// How many words back a question word ("what", "who", …) may sit and still license a
/// sentence that ends in a stranded preposition or auxiliary ("what I'm proud of.").
const WH_WINDOW: usize = 6;

/// Thresholds of the turn detector. Times are seconds; silences are measured from the last
/// voice end of the answer.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct TurnConfig {
    /// Silence that ends an answer that sounds finished: short, because a finished answer should
    /// get the next question fast, but longer than the gap a fluent speaker usually leaves
    /// between two sentences (about half a second), since whisper writes the period between
    /// them too.
    pub finished_silence_s: f64,
    /// Silence that ends a finished-sounding answer with less than
    /// [`short_answer_speech_s`](Self::short_answer_speech_s) of speech: short answers are more
    /// often a first sentence than a whole answer, so they get a little longer.
    pub short_answer_silence_s: f64,
    /// Speech (seconds voiced) below which an answer counts as short.
    pub short_answer_speech_s: f64,
    /// Speech below which an answer sounds finished only if it is a plain short reply ("Yes.",
    /// "No, I haven't."): a couple of seconds of speech is usually the start of an answer.
    pub min_speech_s: f64,
    /// Silence that ends an answer that does not sound finished. Must stay above the longest
    /// thinking pause that must never be cut (about 4 s).
    pub unfinished_silence_s: f64,
    /// Silence after a spoken end phrase ("that's my answer") before the turn ends.
    pub end_phrase_silence_s: f64,
    /// Hard cap on silence after the last voice end, whatever the transcript says and even if
    /// its final transcript never arrives.
    pub max_silence_s: f64,
    /// With nothing said at all, the turn ends this long after the question.
    pub no_answer_s: f64,
    /// Safety cap on the whole answer, measured from the question, even while voice is active
    /// (a VAD stuck on noise must not hang the interview).
    pub max_answer_s: f64,
    /// A final transcript covers the audio up to a voice end if it ends no more than this
    /// before it (utterance ends and VAD ends are cut on slightly different grids).
    pub final_tolerance_s: f64,
    /// With an expected answer length (see [`TurnDetector::set_expected_answer_s`], the
    /// shortest a full answer runs): a finished-sounding answer with less speech than this
    /// share of it is more likely a point followed by a thinking pause than a whole answer…
    /// The whole of it by default: whisper closes an unfinished sentence with a period at a
    /// thinking pause often enough (a trailing "and the" written "and verb.", a dropped "but")
    /// that a period is no proof of an end anywhere short of a full answer.
    pub early_share: f64,
    /// …so it needs this much silence (above the longest thinking pause that must not be cut).
    pub early_finished_silence_s: f64,
    /// Without an expected answer length (consent, the warm-up, a probe): an answer with more
    /// speech than this is more than a plain reply, and a finished-sounding sentence in it
    /// needs [`early_finished_silence_s`](Self::early_finished_silence_s) of silence too.
    /// Whisper writes a period into a sentence cut by a thinking pause often enough (a dropped
    /// "but" or "um", a sentence that happens to read as whole) that such a sentence is no
    /// proof of an end, an expert may stop between two sentences to think, and there is no
    /// length to go by. Just above [`min_speech_s`](Self::min_speech_s) by default, so only a
    /// plain short reply ends sooner: on answers the rules were not fitted to, whisper closed
    /// sentences cut by a pause after 3–6 s of speech ("…before doing anything." for "…anything,
    /// um, ⟨pause⟩ drastic", "…so it's all." for "…so it's all ⟨pause⟩ internal"), and
    /// answers of two sentences paused after 9–10 s.
    pub open_long_answer_s: f64,
    /// With an expected answer length: an answer with at least this share of it whose last
    /// word is a content word without a final period (which whisper often drops)…
    /// Keep it at or above [`early_share`](Self::early_share), or an ending without its
    /// period is trusted sooner than one with it.
    pub complete_share: f64,
    /// …ends after this much silence rather than the unfinished-clause wait.
    pub unpunctuated_silence_s: f64,
    /// Learning the speaker's pauses: once this applicant has paused after a sentence that
    /// sounded finished and then went on talking (a pause the finished rule would have cut had
    /// the answer been further along), a finished-sounding answer of theirs needs that pause
    /// plus this margin of silence (at most [`unfinished_silence_s`](Self::unfinished_silence_s))
    /// for the rest of the interview, until the answer reaches the expected length. Whisper tends to drop a trailing "but" or "and" before a
    /// pause, so the transcript alone cannot tell such a pause from the end.
    pub learned_pause_margin_s: f64,
    /// Whether to learn the speaker's pauses at all (see above).
    pub learn_pauses: bool,
}

impl Default for TurnConfig {
    fn default() -> Self {
        TurnConfig {
            finished_silence_s: 0.8,
            short_answer_silence_s: 1.0,
            short_answer_speech_s: 5.0,
            min_speech_s: 2.5,
            unfinished_silence_s: 4.5,
            end_phrase_silence_s: 0.3,
            max_silence_s: 8.0,
            no_answer_s: 12.0,
            max_answer_s: 300.0,
            final_tolerance_s: 0.1,
            early_share: 1.0,
            early_finished_silence_s: 3.0,
            open_long_answer_s: 3.0,
            complete_share: 1.0,
            unpunctuated_silence_s: 1.2,
            learned_pause_margin_s: 0.5,
            learn_pauses: true,
        }
    }
}

/// Why a [`TurnConfig`] cannot be used.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum TurnConfigError {
    /// A threshold is negative, infinite or NaN.
    #[error("turn.{field} must be a finite number of seconds >= 0, got {value}")]
    NotNonNegative {
        /// The field.
        field: &'static str,
        /// Its value.
        value: f64,
    },
    /// Two thresholds are in the wrong order.
    #[error("turn.{shorter} ({shorter_value} s) must not exceed turn.{longer} ({longer_value} s)")]
    Order {
        /// The field that must be the smaller.
        shorter: &'static str,
        /// Its value.
        shorter_value: f64,
        /// The field that must be the larger.
        longer: &'static str,
        /// Its value.
        longer_value: f64,
    },
}

impl TurnConfig {
    /// Checks that every threshold is a finite non-negative number and that the silences are
    /// ordered finished ≤ unfinished ≤ hard cap.
    pub fn validate(&self) -> Result<(), TurnConfigError> {
        let fields = [
            ("finished_silence_s", self.finished_silence_s),
            ("short_answer_silence_s", self.short_answer_silence_s),
            ("short_answer_speech_s", self.short_answer_speech_s),
            ("min_speech_s", self.min_speech_s),
            ("unfinished_silence_s", self.unfinished_silence_s),
            ("end_phrase_silence_s", self.end_phrase_silence_s),
            ("max_silence_s", self.max_silence_s),
            ("no_answer_s", self.no_answer_s),
            ("max_answer_s", self.max_answer_s),
            ("final_tolerance_s", self.final_tolerance_s),
            ("learned_pause_margin_s", self.learned_pause_margin_s),
            ("early_finished_silence_s", self.early_finished_silence_s),
            ("open_long_answer_s", self.open_long_answer_s),
        ];
        for (field, value) in fields {
            if !(value.is_finite() && value >= 0.0) {
                return Err(TurnConfigError::NotNonNegative { field, value });
            }
        }
        let order = [
            (
                ("finished_silence_s", self.finished_silence_s),
                ("unfinished_silence_s", self.unfinished_silence_s),
            ),
            (
                ("short_answer_silence_s", self.short_answer_silence_s),
                ("unfinished_silence_s", self.unfinished_silence_s),
            ),
            (
                ("unfinished_silence_s", self.unfinished_silence_s),
                ("max_silence_s", self.max_silence_s),
            ),
        ];
        for ((shorter, shorter_value), (longer, longer_value)) in order {
            if shorter_value > longer_value {
                return Err(TurnConfigError::Order {
                    shorter,
                    shorter_value,
                    longer,
                    longer_value,
                });
            }
        }
        Ok(())
    }
}

/// Why the turn ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum TurnEndReason {
    /// The client pressed "I'm done".
    ClientDone,
    /// The answer ends with a spoken end phrase ("that's my answer", "I'm done", …).
    SpokenEnd,
    /// The answer sounds finished and was followed by a short silence.
    Silence,
    /// A long silence: the answer did not sound finished, or its transcript never came.
    LongSilence,
    /// Nothing was said after the question.
    NoAnswer,
    /// The answer ran past [`TurnConfig::max_answer_s`].
    MaxDuration,
}

impl TurnEndReason {
    /// A stable lowercase name, for logs and metric labels.
    pub fn as_str(self) -> &'static str {
        match self {
            TurnEndReason::ClientDone => "client_done",
            TurnEndReason::SpokenEnd => "spoken_end",
            TurnEndReason::Silence => "silence",
            TurnEndReason::LongSilence => "long_silence",
            TurnEndReason::NoAnswer => "no_answer",
            TurnEndReason::MaxDuration => "max_duration",
        }
    }
}

/// The applicant's turn is over.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct TurnDecision {
    /// Why.
    pub reason: TurnEndReason,
    /// When the turn ended (session clock): the button press for
    /// [`ClientDone`](TurnEndReason::ClientDone), otherwise the poll that found the rule met.
    pub at_s: f64,
    /// The last voiced time of the answer, so the caller can cut the answer audio: the decision
    /// time if voice was still active, the question time if nothing was voiced.
    pub answer_end_s: f64,
}

/// What the transcript so far says about the end of the answer, worked out once per final.
#[derive(Debug, Clone, Copy, Default)]
struct Tail {
    /// The transcript ends with a spoken end phrase.
    end_phrase: bool,
    /// [`sounds_finished`] holds for the transcript.
    finished: bool,
    /// The whole transcript is a plain short reply.
    short_reply: bool,
    /// The transcript has at least one word.
    has_words: bool,
    /// It ends on a content word without punctuation (whisper often drops a final period):
    /// neither finished-sounding nor an open clause.
    content_end: bool,
}

/// Decides when the applicant has finished answering the current question. Pure and
/// deterministic: events and polls carry session-clock times.
#[derive(Debug, Clone)]
pub struct TurnDetector {
    config: TurnConfig,
    /// When the current question was asked; `None` while idle (before the first question and
    /// after [`reset`](Self::reset)), when events are ignored.
    question_at: Option<f64>,
    /// The decision for the current question was returned; nothing more until the next one.
    decided: bool,
    /// Start of the voice in progress. Kept across questions: the VAD is one continuous signal.
    voice_since: Option<f64>,
    /// The latest voice end of this answer: where silence is measured from.
    last_voice_end: Option<f64>,
    /// Seconds voiced in this answer (closed voice segments).
    voiced_s: f64,
    /// End of the latest final transcript: audio up to here has its text.
    finals_until: Option<f64>,
    /// Seconds covered by finals with words, for callers that send finals but no VAD events.
    finals_span_s: f64,
    /// The answer's final transcripts, joined by spaces.
    transcript: String,
    /// A partial caption had words (used only when the final is missing).
    partial_words: bool,
    /// When the client pressed "I'm done".
    client_done_at: Option<f64>,
    /// Cached evaluation of `transcript`.
    tail: Tail,
    /// The answer length the question expects (seconds of speech), if known.
    expected_s: Option<f64>,
    /// The longest pause this speaker made after a finished-sounding sentence and then went on
    /// (kept across questions): see [`TurnConfig::learned_pause_margin_s`].
    learned_pause_s: f64,
}

impl TurnDetector {
    /// An idle detector: it waits for [`start_question`](Self::start_question).
    pub fn new(config: TurnConfig) -> Self {
        TurnDetector {
            config,
            question_at: None,
            decided: false,
            voice_since: None,
            last_voice_end: None,
            voiced_s: 0.0,
            finals_until: None,
            finals_span_s: 0.0,
            transcript: String::new(),
            partial_words: false,
            client_done_at: None,
            tail: Tail::default(),
            expected_s: None,
            learned_pause_s: 0.0,
        }
    }

    /// The thresholds in use.
    pub fn config(&self) -> &TurnConfig {
        &self.config
    }

    /// The final transcript of the current answer so far (finals joined by spaces).
    pub fn transcript(&self) -> &str {
        &self.transcript
    }

    /// How long an answer to the current question is expected to be (seconds; e.g. the rubric
    /// item's minimum), or `None` when unknown. Kept until changed.
    pub fn set_expected_answer_s(&mut self, expected_s: Option<f64>) {
        self.expected_s = expected_s;
    }

    /// A new question was asked at `at_s`: forgets the previous answer. Voice already active
    /// stays active (counted from `at_s`); finals of audio that ended before `at_s` are ignored.
    pub fn start_question(&mut self, at_s: f64) {
        self.clear_answer();
        self.question_at = Some(at_s);
    }

    /// The VAD heard voice start at `at_s`. Cancels any decision that was waiting on silence.
    pub fn voice_start(&mut self, at_s: f64) {
        if self.voice_since.is_some() {
            return;
        }
        self.voice_since = Some(at_s);
        // A pause after a finished-sounding sentence, and the speaker went on: remember it.
        if let (Some(_), Some(end)) = (self.open_question(), self.last_voice_end)
            && !self.final_pending()
            && (self.tail.finished || self.tail.content_end)
            && !self.tail.end_phrase
        {
            let pause = at_s - end;
            if pause >= self.config.finished_silence_s {
                self.learned_pause_s = self.learned_pause_s.max(pause);
            }
        }
    }

    /// The longest pause after a finished-sounding sentence that this speaker went on from, so
    /// far (seconds; 0 when none).
    pub fn learned_pause_s(&self) -> f64 {
        self.learned_pause_s
    }

    /// The VAD heard voice end at `at_s` (the end of the last voiced frame).
    pub fn voice_end(&mut self, at_s: f64) {
        let started = self.voice_since.take();
        let Some(q) = self.open_question() else {
            return;
        };
        if at_s < q {
            return;
        }
        if let Some(start) = started {
            self.voiced_s += (at_s - start.max(q)).max(0.0);
        }
        self.last_voice_end = Some(self.last_voice_end.map_or(at_s, |e| e.max(at_s)));
    }

    /// A caption of the utterance in progress, covering audio up to `at_s`. Captions are
    /// unstable and superseded by the final, so they never shorten or lengthen a wait; they only
    /// tell the safety timeout that words were heard when the final never came.
    pub fn partial(&mut self, text: &str, at_s: f64) {
        if let Some(q) = self.open_question()
            && at_s >= q
            && has_words(text)
        {
            self.partial_words = true;
        }
    }

    /// The final text of an utterance spanning `start_s..end_s`. Finals arrive in utterance
    /// order, some time after the utterance ended; every ended utterance must get one, empty if
    /// nothing was recognised, or the turn waits for it until the safety timeout.
    pub fn final_text(&mut self, text: &str, start_s: f64, end_s: f64) {
        let Some(q) = self.open_question() else {
            return;
        };
        if end_s < q {
            return;
        }
        self.finals_until = Some(self.finals_until.map_or(end_s, |f| f.max(end_s)));
        let text = text.trim();
        if !has_words(text) {
            return;
        }
        self.finals_span_s += (end_s - start_s.max(q)).max(0.0);
        if !self.transcript.is_empty() {
            self.transcript.push(' ');
        }
        self.transcript.push_str(text);
        let words = words(&self.transcript);
        self.tail = Tail {
            end_phrase: ends_with_end_phrase(&self.transcript).is_some(),
            finished: sounds_finished(&self.transcript),
            short_reply: is_short_reply(&words),
            has_words: true,
            content_end: ends_on_content_word(&self.transcript),
        };
    }

    /// The client pressed "I'm done" at `at_s`: the turn ends at the next poll, even mid-voice.
    pub fn client_done(&mut self, at_s: f64) {
        if let Some(q) = self.open_question()
            && self.client_done_at.is_none()
        {
            self.client_done_at = Some(at_s.max(q));
        }
    }

    /// Call on every audio push or timer tick with the current session time: returns the
    /// decision once per question, as soon as a rule is met.
    pub fn poll(&mut self, now_s: f64) -> Option<TurnDecision> {
        let (due_s, reason) = self.due()?;
        if due_s > now_s + TIME_EPS {
            return None;
        }
        let at_s = match reason {
            TurnEndReason::ClientDone => due_s,
            _ => now_s,
        };
        let answer_end_s = if self.voice_since.is_some() {
            at_s
        } else {
            self.last_voice_end
                .or(self.finals_until)
                .or(self.question_at)
                .unwrap_or(at_s)
        };
        self.decided = true;
        Some(TurnDecision {
            reason,
            at_s,
            answer_end_s,
        })
    }

    /// The session time at which [`poll`](Self::poll) will return a decision if no other event
    /// arrives (it may already have passed: poll now), or `None` when nothing is awaited. Any
    /// event can move it, so ask again after each.
    pub fn next_deadline(&self) -> Option<f64> {
        self.due().map(|(at, _)| at)
    }

    /// Back to idle, as after [`new`](Self::new), voice state and learned pauses included.
    pub fn reset(&mut self) {
        self.clear_answer();
        self.question_at = None;
        self.voice_since = None;
        self.learned_pause_s = 0.0;
    }

    fn clear_answer(&mut self) {
        self.decided = false;
        self.last_voice_end = None;
        self.voiced_s = 0.0;
        self.finals_until = None;
        self.finals_span_s = 0.0;
        self.transcript.clear();
        self.partial_words = false;
        self.client_done_at = None;
        self.tail = Tail::default();
    }

    /// The current question's time, unless idle or already decided.
    fn open_question(&self) -> Option<f64> {
        if self.decided { None } else { self.question_at }
    }

    /// A voice end happened whose final transcript has not arrived yet.
    fn final_pending(&self) -> bool {
        self.last_voice_end.is_some_and(|end| {
            self.finals_until
                .is_none_or(|f| f + self.config.final_tolerance_s < end)
        })
    }

    /// The earliest time a rule ends the turn, given the events so far, and which rule.
    fn due(&self) -> Option<(f64, TurnEndReason)> {
        let q = self.open_question()?;
        if let Some(at) = self.client_done_at {
            return Some((at, TurnEndReason::ClientDone));
        }
        let cap = (q + self.config.max_answer_s, TurnEndReason::MaxDuration);
        let rule = if self.voice_since.is_some() {
            None
        } else {
            Some(self.silence_rule(q))
        };
        Some(match rule {
            Some(rule) if rule.0 <= cap.0 => rule,
            _ => cap,
        })
    }

    /// The silence rule that applies while voice is not active.
    fn silence_rule(&self, q: f64) -> (f64, TurnEndReason) {
        let c = &self.config;
        // Without VAD events (a caller driving the detector from finals alone), the end of the
        // last final stands in for the last voice end.
        let Some(anchor) = self.last_voice_end.or(self.finals_until) else {
            return (q + c.no_answer_s, TurnEndReason::NoAnswer);
        };
        if self.final_pending() {
            let reason = if self.tail.has_words || self.partial_words {
                TurnEndReason::LongSilence
            } else {
                TurnEndReason::NoAnswer
            };
            return (anchor + c.max_silence_s, reason);
        }
        if !self.tail.has_words {
            // Voice without words (coughs, noise): still nothing said.
            let at = (q + c.no_answer_s).max(anchor + c.unfinished_silence_s);
            return (at, TurnEndReason::NoAnswer);
        }
        let speech_s = self.voiced_s.max(self.finals_span_s);
        let share = self.expected_s.filter(|e| *e > 0.0).map(|e| speech_s / e);
        // This speaker has gone on after pauses this long following a finished sentence: until
        // the answer has the length the question calls for, give them that patience.
        let learned =
            if c.learn_pauses && self.learned_pause_s > 0.0 && share.is_none_or(|s| s < 1.0) {
                (self.learned_pause_s + c.learned_pause_margin_s).min(c.unfinished_silence_s)
            } else {
                0.0
            };
        let (silence, reason) = if self.tail.end_phrase {
            (c.end_phrase_silence_s, TurnEndReason::SpokenEnd)
        } else if self.tail.finished && (speech_s >= c.min_speech_s || self.tail.short_reply) {
            let early = match share {
                Some(share) => share < c.early_share,
                None => speech_s >= c.open_long_answer_s,
            };
            let silence = if early {
                c.early_finished_silence_s
            } else if speech_s < c.short_answer_speech_s {
                c.short_answer_silence_s
            } else {
                c.finished_silence_s
            };
            let silence = if self.tail.short_reply {
                silence
            } else {
                silence.max(learned)
            };
            (silence, TurnEndReason::Silence)
        } else if self.tail.content_end && share.is_some_and(|s| s >= c.complete_share) {
            (
                c.unpunctuated_silence_s.max(learned),
                TurnEndReason::Silence,
            )
        } else {
            (c.unfinished_silence_s, TurnEndReason::LongSilence)
        };
        (anchor + silence.min(c.max_silence_s), reason)
    }
}

impl Default for TurnDetector {
    fn default() -> Self {
        TurnDetector::new(TurnConfig::default())
    }
}

/// Whether `text` ends on a word that closes a clause but without terminal punctuation or a
/// trailing-off mark ("… and that is how I would treat it"), with at least
/// [`MIN_FINISHED_WORDS`] words: probably finished, with the final period lost.
pub fn ends_on_content_word(text: &str) -> bool {
    let t = trim_closers(text);
    if t.is_empty() || trails_off(t) || t.ends_with([',', ';', ':', '-', '.', '?', '!']) {
        return false;
    }
    let words = words(t);
    words.len() >= MIN_FINISHED_WORDS && last_word_closes(&words)
}

/// Whether `text` (an answer's transcript so far) ends in a completed clause: terminal
/// punctuation, no trailing-off mark ("...", "—", "-"), a last word that does not leave the
/// clause open (conjunction, article, preposition, auxiliary, filler…), and at least
/// [`MIN_FINISHED_WORDS`] words unless the whole text is a plain short reply ("Yes.",
/// "No, I haven't.", "I don't know.").
pub fn sounds_finished(text: &str) -> bool {
    let t = trim_closers(text);
    if trails_off(t) || !t.ends_with(['.', '?', '!']) {
        return false;
    }
    let words = words(t);
    if words.is_empty() || !last_word_closes(&words) {
        return false;
    }
    words.len() >= MIN_FINISHED_WORDS || is_short_reply(&words)
}

/// If `text` ends with a spoken end phrase ("that's my answer", "I'm done", "that's all",
/// "end of answer", "nothing more to add", …) as its last words, the byte index where the
/// phrase starts, so the caller can strip it from the scored text. A trailing "thank you" is
/// allowed after it; a trailing-off mark or a question mark is not, and the phrase must start
/// the sentence or follow a lead-in such as "so", "and", "okay", "I think".
pub fn ends_with_end_phrase(text: &str) -> Option<usize> {
    let t = trim_closers(text);
    if trails_off(t) || t.ends_with('?') {
        return None;
    }
    let words = words(t);
    // Only the last words can hold an end phrase and a courtesy.
    let mut toks = expand(&words, words.len().saturating_sub(END_PHRASE_WINDOW));
    strip_courtesy(&mut toks);
    let mut best: Option<usize> = None;
    for phrase in END_PHRASES {
        let phrase: Vec<&str> = phrase.split(' ').collect();
        if phrase.len() > toks.len() {
            continue;
        }
        let at = toks.len() - phrase.len();
        let matches = toks[at..]
            .iter()
            .zip(&phrase)
            .all(|(tok, want)| tok.word == *want);
        if !matches || !toks[at].whole_start {
            continue;
        }
        let word = toks[at].word_index;
        let led_in = word == 0
            || words[word].brk != Break::None
            || LEAD_INS.contains(&norm(words[word - 1].text).as_str());
        if led_in && best.is_none_or(|b| word < b) {
            best = Some(word);
        }
    }
    best.map(|w| words[w].start)
}

/// Written words at the end of a transcript searched for an end phrase and a courtesy.
const END_PHRASE_WINDOW: usize = 16;

/// End phrases, with contractions expanded ("that's" → "that is").
const END_PHRASES: &[&str] = &[
    "that is my answer",
    "that is my final answer",
    "that would be my answer",
    "that is the end of my answer",
    "that concludes my answer",
    "that is all",
    "that is all i have",
    "that is all i have got",
    "that is all i got",
    "that is all i have to say",
    "that is all i wanted to say",
    "that is all i can say",
    "that is all i can think of",
    "that is all from me",
    "that is all for me",
    "that is about it",
    "that is it from me",
    "that is everything",
    "i am done",
    "i am finished",
    "i am done answering",
    "end of answer",
    "end of my answer",
    "nothing more to add",
    "nothing else to add",
    "nothing further to add",
    "i have nothing more to add",
    "i have nothing else to add",
    "i have nothing further to add",
    "i do not have anything more to add",
    "i do not have anything else to add",
];

/// Words that may come right before an end phrase without a punctuation break.
const LEAD_INS: &[&str] = &[
    "so",
    "and",
    "okay",
    "ok",
    "alright",
    "yeah",
    "yep",
    "yes",
    "well",
    "um",
    "uh",
    "er",
    "anyway",
    "anyways",
    "basically",
    "think",
    "guess",
    "believe",
    "suppose",
];

/// Last words that always leave the clause open.
const OPEN_ENDINGS: &[&str] = &[
    "the", "an", "my", "your", "their", "our", "and", "but", "or", "nor", "plus", "because",
    "cause", "although", "unless", "whereas", "whether", "which", "whose", "as", "than", "very",
    "just", "um", "uh", "er", "erm", "uhm", "hmm", "mm", "ah", "eh", "i'm", "im", "it's", "that's",
    "there's", "we're", "they're", "you're", "he's", "she's", "i've", "we've", "they've", "you've",
    "i'd", "we'd", "they'd", "you'd", "i'll", "we'll", "they'll", "you'll", "let's",
];

/// Phrases a speaker says while searching for the next words, as written by whisper
/// (lowercase, plain apostrophes).
const THINKING_PHRASES: &[&str] = &[
    "let me think",
    "let me just think",
    "let me think about it",
    "let me think about that",
    "let me see",
    "let me recall",
    "let me remember",
    "you know",
    "i mean",
    "how do i put it",
    "how should i put it",
    "how shall i put it",
    "what's it called",
    "what is it called",
    "what's the word",
    "what is the word",
    "what else",
    "where was i",
    "hold on",
    "give me a second",
    "give me a moment",
    "just a second",
    "just a moment",
    "one second",
    "one moment",
];

/// Auxiliaries: a clause may end on one only after a subject pronoun ("I do.") or inside a
/// wh-clause ("that's what it is.").
const AUXILIARIES: &[&str] = &[
    "is",
    "are",
    "was",
    "were",
    "am",
    "be",
    "been",
    "being",
    "do",
    "does",
    "did",
    "have",
    "has",
    "had",
    "will",
    "would",
    "can",
    "could",
    "should",
    "shall",
    "may",
    "might",
    "must",
    "isn't",
    "aren't",
    "wasn't",
    "weren't",
    "don't",
    "doesn't",
    "didn't",
    "haven't",
    "hasn't",
    "hadn't",
    "won't",
    "wouldn't",
    "can't",
    "couldn't",
    "shouldn't",
    "mustn't",
];

/// Pronouns that are always subjects: an auxiliary after one closes the clause ("I do.",
/// "the things they do.").
const SUBJECTS: &[&str] = &[
    "i",
    "he",
    "she",
    "we",
    "they",
    "there",
    "who",
    "everyone",
    "everybody",
    "nobody",
    "someone",
    "somebody",
];

/// Pronouns that may be subjects or objects: an auxiliary after one closes the clause only when
/// the pronoun opens a clause ("Yes, it was.", "I think it is.", but not "the reason we picked
/// it was.").
const OBJECT_SUBJECTS: &[&str] = &["it", "you", "that", "this"];

/// Words after which a pronoun opens a clause.
const CLAUSE_OPENERS: &[&str] = &[
    "and", "but", "so", "because", "think", "thought", "guess", "know", "knew", "sure", "hope",
    "believe", "yes", "yeah", "no", "if", "whether", "than", "as", "when", "where", "how", "what",
    "why", "though", "although",
];

/// Verbs that take an object in an explanation ("I'd give…", "we'd use…"): right after a modal
/// or a subject with a modal ("I'd start.", "you can use."), one leaves the clause open, as
/// when whisper writes a period at a thinking pause after "If the pressure stays low, I'd
/// start". Only inside a wh-clause ("what I'd use.") may the sentence end there.
const OBJECT_VERBS: &[&str] = &[
    "give",
    "use",
    "order",
    "get",
    "add",
    "consider",
    "recommend",
    "prescribe",
    "send",
    "take",
    "want",
    "need",
    "make",
    "put",
    "start",
    "begin",
    "check",
    "run",
    "call",
    "suggest",
    "choose",
    "pick",
    "include",
    "apply",
    "measure",
    "mention",
    "compare",
    "review",
    "request",
    "obtain",
    "perform",
    "prefer",
];

/// Words after which a bare verb is the head of a verb phrase still waiting for its object:
/// modals, and subjects fused with one ("i'd", "we'll"); "i'm" is whisper mishearing "I'd".
const MODAL_LEADS: &[&str] = &[
    "would", "will", "should", "could", "can", "must", "might", "may", "shall", "i'd", "we'd",
    "you'd", "they'd", "he'd", "she'd", "i'll", "we'll", "you'll", "they'll", "he'll", "she'll",
    "i'm",
];

/// Prepositions that can only end a clause when stranded by a wh-word ("what I worked with.").
const STRANDED_PREPOSITIONS: &[&str] =
    &["of", "with", "about", "from", "for", "at", "into", "onto"];

/// Words that open a wh-clause.
const WH_WORDS: &[&str] = &[
    "what",
    "which",
    "who",
    "whom",
    "whose",
    "where",
    "when",
    "how",
    "why",
    "whatever",
    "wherever",
    "whoever",
    "whichever",
    "whenever",
    "however",
];

/// "… so." closes after these ("I think so.", "a year or so.").
const SO_CLOSERS: &[&str] = &[
    "think", "thought", "hope", "hoped", "believe", "guess", "suppose", "say", "said", "do", "did",
    "done", "doing", "told", "or", "not", "why", "even", "quite", "more", "ever", "imagine",
    "expect", "assume", "seem", "seems", "afraid",
];

/// "… then." closes after these ("since then.", "back then.").
const THEN_CLOSERS: &[&str] = &[
    "since", "back", "by", "until", "till", "even", "just", "only", "right", "from", "before",
];

/// "… to." closes after these ("I'd love to.", "I decided not to.").
const TO_CLOSERS: &[&str] = &[
    "want",
    "wants",
    "wanted",
    "love",
    "loved",
    "like",
    "liked",
    "need",
    "needs",
    "needed",
    "have",
    "has",
    "had",
    "going",
    "got",
    "try",
    "tried",
    "trying",
    "used",
    "able",
    "supposed",
    "plan",
    "planned",
    "hope",
    "hoped",
    "chose",
    "choose",
    "decided",
    "decide",
    "ought",
    "meant",
    "asked",
    "allowed",
    "wish",
    "wished",
    "prefer",
    "preferred",
    "forgot",
    "managed",
    "not",
    "afford",
    "chance",
    "opportunity",
    "time",
    "reason",
    "agreed",
    "refused",
    "happen",
    "happened",
    "seem",
    "seems",
    "seemed",
];

/// "… that." is a demonstrative, and closes, after these ("something like that.").
const THAT_CLOSERS: &[&str] = &[
    "like", "all", "about", "with", "of", "on", "for", "before", "after", "than", "beyond", "from",
    "besides", "into", "at", "by", "do", "did", "done", "does", "doing", "exactly", "only",
];

/// First words of a plain short reply ("No, I haven't.").
const SHORT_REPLY_LEADS: &[&str] = &[
    "yes",
    "yeah",
    "yep",
    "yup",
    "no",
    "nope",
    "nah",
    "sure",
    "correct",
    "exactly",
    "absolutely",
    "definitely",
    "certainly",
    "indeed",
    "never",
    "agreed",
];

/// Whole short replies that are complete answers.
const SHORT_REPLIES: &[&str] = &[
    "i don't know",
    "i do not know",
    "i dont know",
    "i'm not sure",
    "i am not sure",
    "not sure",
    "not really",
    "no idea",
    "i have no idea",
    "i agree",
    "i disagree",
    "of course",
    "not at all",
    "i think so",
    "i don't think so",
    "i guess so",
    "i hope so",
    "i believe so",
    "that's right",
    "that's correct",
    "that is right",
    "that is correct",
    "i have",
    "i haven't",
    "i have not",
    "i do",
    "i don't",
    "i did",
    "i didn't",
    "i can",
    "i can't",
    "i cannot",
    "i am",
    "i'm not",
    "i was",
    "i wasn't",
    "i would",
    "i wouldn't",
    "me too",
    "me neither",
    "same here",
    "i'd rather not",
    "i'd rather not say",
    "i don't remember",
    "i can't remember",
    "i don't recall",
    "pass",
    "next question",
    "could you repeat the question",
    "can you repeat the question",
];

/// What separates a word from the one before it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Break {
    /// Only spaces (or a hyphen).
    None,
    /// Other punctuation: a comma, a colon, a dash, quotes.
    Soft,
    /// A sentence end ('.', '?', '!', ';', '…'), or the start of the text.
    Hard,
}

/// A word of a transcript.
#[derive(Debug, Clone, Copy)]
struct Word<'a> {
    /// As written.
    text: &'a str,
    /// Byte index in the text.
    start: usize,
    /// What separates it from the previous word.
    brk: Break,
}

fn is_apostrophe(c: char) -> bool {
    c == '\'' || c == '\u{2019}'
}

/// Splits `text` into words (letters, digits and inner apostrophes), noting the punctuation
/// before each.
fn words(text: &str) -> Vec<Word<'_>> {
    let mut out = Vec::new();
    let mut gap = Break::Hard;
    let mut run: Option<usize> = None;
    for (i, c) in text.char_indices() {
        if c.is_alphanumeric() || is_apostrophe(c) {
            if run.is_none() {
                run = Some(i);
            }
            continue;
        }
        if let Some(s) = run.take() {
            push_word(text, s, i, &mut gap, &mut out);
        }
        let brk = match c {
            '.' | '?' | '!' | ';' | '\u{2026}' => Break::Hard,
            '-' => Break::None,
            c if c.is_whitespace() => Break::None,
            _ => Break::Soft,
        };
        gap = match (gap, brk) {
            (Break::Hard, _) | (_, Break::Hard) => Break::Hard,
            (Break::Soft, _) | (_, Break::Soft) => Break::Soft,
            _ => Break::None,
        };
    }
    if let Some(s) = run {
        push_word(text, s, text.len(), &mut gap, &mut out);
    }
    out
}

/// Adds `text[start..end]` without its outer apostrophes (quotes) as a word, if anything is left.
fn push_word<'a>(
    text: &'a str,
    start: usize,
    end: usize,
    gap: &mut Break,
    out: &mut Vec<Word<'a>>,
) {
    let raw = &text[start..end];
    let inner = raw.trim_start_matches(is_apostrophe);
    let lead = raw.len() - inner.len();
    let inner = inner.trim_end_matches(is_apostrophe);
    if !inner.is_empty() {
        out.push(Word {
            text: inner,
            start: start + lead,
            brk: *gap,
        });
        *gap = Break::None;
    }
}

/// Lowercase with typographic apostrophes made plain.
fn norm(word: &str) -> String {
    word.chars()
        .map(|c| if c == '\u{2019}' { '\'' } else { c })
        .flat_map(char::to_lowercase)
        .collect()
}

fn has_words(text: &str) -> bool {
    text.chars().any(char::is_alphanumeric)
}

/// Strips trailing whitespace, closing quotes and brackets.
fn trim_closers(text: &str) -> &str {
    text.trim_end_matches(|c: char| {
        c.is_whitespace() || matches!(c, '"' | '\'' | '\u{201d}' | '\u{2019}' | ')' | ']')
    })
}

/// Whisper's marks for speech that trails off.
fn trails_off(text: &str) -> bool {
    text.ends_with("..") || text.ends_with(['\u{2026}', '\u{2014}', '\u{2013}', '-'])
}

/// Whether a wh-word sits within [`WH_WINDOW`] words before the last, in the same sentence.
fn wh_near(words: &[Word<'_>]) -> bool {
    let Some((last, before)) = words.split_last() else {
        return false;
    };
    if last.brk == Break::Hard {
        return false;
    }
    for w in before.iter().rev().take(WH_WINDOW) {
        if WH_WORDS.contains(&norm(w.text).as_str()) {
            return true;
        }
        if w.brk == Break::Hard {
            break;
        }
    }
    false
}

/// Whether the last word can close a clause.
fn last_word_closes(words: &[Word<'_>]) -> bool {
    let Some((last, before)) = words.split_last() else {
        return false;
    };
    let word = norm(last.text);
    // The previous word, if it is in the same clause (no punctuation in between).
    let prev = match before.last() {
        Some(p) if last.brk == Break::None => Some(norm(p.text)),
        _ => None,
    };
    let prev_in = |set: &[&str]| prev.as_deref().is_some_and(|p| set.contains(&p));
    let w = word.as_str();
    if OPEN_ENDINGS.contains(&w) || ends_with_thinking_phrase(words) {
        return false;
    }
    if AUXILIARIES.contains(&w) {
        return prev_in(SUBJECTS) || object_subject_closes(words) || wh_near(words);
    }
    if STRANDED_PREPOSITIONS.contains(&w) {
        return wh_near(words);
    }
    if OBJECT_VERBS.contains(&w) && prev_in(MODAL_LEADS) {
        return wh_near(words);
    }
    match w {
        // The article is lowercase; "A" after a word is a letter or grade ("I got an A.").
        "a" => last.text == "A" && prev.is_some(),
        "so" => prev_in(SO_CLOSERS),
        // A filler after a break ("…, well."), an adverb after a word ("it went well.").
        "well" => prev
            .as_deref()
            .is_some_and(|p| !OPEN_ENDINGS.contains(&p) && !AUXILIARIES.contains(&p)),
        "like" => prev.is_some() && wh_near(words),
        "then" => prev_in(THEN_CLOSERS),
        "to" => prev_in(TO_CLOSERS) || wh_near(words),
        "that" => prev_in(THAT_CLOSERS),
        "if" => prev.as_deref() == Some("what"),
        "i" => prev_in(AUXILIARIES) || prev_in(&["than", "and", "as"]),
        _ => true,
    }
}

/// Whether the last words say that the speaker is still thinking ("…, so, let me think.",
/// "…, you know.", "what's it called"): a pause follows, never the end of the answer.
fn ends_with_thinking_phrase(words: &[Word<'_>]) -> bool {
    THINKING_PHRASES.iter().any(|phrase| {
        let phrase: Vec<&str> = phrase.split(' ').collect();
        words.len() >= phrase.len()
            && words[words.len() - phrase.len()..]
                .iter()
                .zip(&phrase)
                .all(|(w, want)| norm(w.text) == *want)
    })
}

/// Whether the word before the last is an [`OBJECT_SUBJECTS`] pronoun that opens a clause.
fn object_subject_closes(words: &[Word<'_>]) -> bool {
    let [.., before, pronoun, last] = words else {
        // "It is." alone: the pronoun opens the text.
        return matches!(words, [pronoun, last]
            if last.brk == Break::None && OBJECT_SUBJECTS.contains(&norm(pronoun.text).as_str()));
    };
    last.brk == Break::None
        && OBJECT_SUBJECTS.contains(&norm(pronoun.text).as_str())
        && (pronoun.brk != Break::None || CLAUSE_OPENERS.contains(&norm(before.text).as_str()))
}

/// Whether the words are a plain, complete short reply ("Yes.", "No, I haven't.").
fn is_short_reply(words: &[Word<'_>]) -> bool {
    let Some(first) = words.first() else {
        return false;
    };
    if words.len() > MAX_SHORT_REPLY_WORDS {
        return false;
    }
    if SHORT_REPLY_LEADS.contains(&norm(first.text).as_str()) {
        return true;
    }
    let joined = words
        .iter()
        .map(|w| norm(w.text))
        .collect::<Vec<_>>()
        .join(" ");
    SHORT_REPLIES.contains(&joined.as_str())
}

/// A word with its contractions expanded, for matching end phrases.
#[derive(Debug, Clone)]
struct Tok {
    /// The (expanded) word, normalised.
    word: &'static str,
    /// Index of the written word it came from.
    word_index: usize,
    /// It is the first part of its written word.
    whole_start: bool,
}

/// Expansions of the contractions that end phrases use; other words pass through.
fn expansion(word: &str) -> Option<&'static [&'static str]> {
    Some(match word {
        "that's" | "thats" => &["that", "is"],
        "it's" => &["it", "is"],
        "i'm" | "im" => &["i", "am"],
        "i've" | "ive" => &["i", "have"],
        "that'd" => &["that", "would"],
        "don't" | "dont" => &["do", "not"],
        _ => return None,
    })
}

/// `words[from..]` as [`Tok`]s. Words that no end phrase uses become "" so that they never
/// match.
fn expand(words: &[Word<'_>], from: usize) -> Vec<Tok> {
    let mut out = Vec::with_capacity(words.len() - from + 4);
    for (i, w) in words.iter().enumerate().skip(from) {
        let n = norm(w.text);
        if let Some(parts) = expansion(&n) {
            for (k, part) in parts.iter().enumerate() {
                out.push(Tok {
                    word: part,
                    word_index: i,
                    whole_start: k == 0,
                });
            }
        } else {
            out.push(Tok {
                word: vocabulary(&n),
                word_index: i,
                whole_start: true,
            });
        }
    }
    out
}

/// The static spelling of a word used by end phrases or courtesies, or "".
fn vocabulary(word: &str) -> &'static str {
    END_PHRASES
        .iter()
        .flat_map(|p| p.split(' '))
        .chain(["thank", "thanks", "you", "very", "so", "much", "a", "lot"])
        .find(|v| *v == word)
        .unwrap_or("")
}

/// Drops a closing courtesy ("thank you", "thanks a lot") from the end.
fn strip_courtesy(toks: &mut Vec<Tok>) {
    let words: Vec<&str> = toks.iter().map(|t| t.word).collect();
    let mut end = words.len();
    for tail in [["very", "much"], ["so", "much"], ["a", "lot"]] {
        if words[..end].ends_with(&tail) {
            end -= 2;
            break;
        }
    }
    if words[..end].ends_with(&["thank", "you"]) {
        end -= 2;
    } else if words[..end].ends_with(&["thanks"]) {
        end -= 1;
    } else {
        return;
    }
    toks.truncate(end);
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    const FINISHED: &str = "We moved the ingestion pipeline to Rust because the garbage \
        collector pauses were hurting our tail latency.";

    /// Polls every 10 ms over `from..=to`; the first decision.
    fn poll_over(d: &mut TurnDetector, from: f64, to: f64) -> Option<TurnDecision> {
        let steps = ((to - from) / 0.01).round() as i64;
        (0..=steps).find_map(|i| d.poll(from + i as f64 * 0.01))
    }

    /// One utterance `start..end` whose final arrives at `final_at`, polled throughout.
    fn utterance(
        d: &mut TurnDetector,
        text: &str,
        start: f64,
        end: f64,
        final_at: f64,
    ) -> Option<TurnDecision> {
        d.voice_start(start);
        if let Some(x) = poll_over(d, start, end) {
            return Some(x);
        }
        d.voice_end(end);
        if let Some(x) = poll_over(d, end, final_at) {
            return Some(x);
        }
        d.final_text(text, start, end + 0.3);
        d.poll(final_at)
    }

    /// The shortest full answer to the questions of the tests that use [`answered_in_full`].
    const FULL_ANSWER_S: f64 = 5.0;

    /// A detector for a question whose full answers run [`FULL_ANSWER_S`] or more: the answers
    /// these tests speak reach that length, so a finished sentence ends them on the short
    /// silence rather than the early-answer patience.
    fn answered_in_full() -> TurnDetector {
        let mut d = TurnDetector::default();
        d.set_expected_answer_s(Some(FULL_ANSWER_S));
        d
    }

    #[test]
    fn sounds_finished_table() {
        let cases = [
            (FINISHED, true),
            ("I led the migration and it took about four months.", true),
            (
                "We used Postgres for that, mostly for the transactions!",
                true,
            ),
            ("Would that scale to a billion rows in practice?", true),
            ("In the end we just rewrote it, and it went well.", true),
            ("I'm not sure that's what the team wanted to.", true),
            ("That's exactly what I'm most proud of.", true),
            (
                "I was hoping to do more of it, but I never got the chance to.",
                true,
            ),
            ("We tried it twice and honestly, I think so.", true),
            ("It was a long project, about a year or so.", true),
            (
                "We did not rewrite it, and nobody asked us to do that.",
                true,
            ),
            (
                "Honestly, I have never been more sure of anything than that.",
                true,
            ),
            ("We benchmarked it and got a clear A.", true),
            ("I don't think the team knew what it is.", true),
            ("We looked at it twice and I think it was.", true),
            ("We tried everything, and yes, it is.", true),
            ("So these are the things they do.", true),
            ("Yes.", true),
            ("No, I haven't.", true),
            ("I don't know.", true),
            ("Yeah, definitely.", true),
            ("Could you repeat the question?", true),
            // Unfinished clauses.
            ("We moved the pipeline to Rust because", false),
            ("We moved the pipeline to Rust because.", false),
            ("The main reason we picked it was.", false),
            ("We measured the latency and.", false),
            ("I think the key thing is, um.", false),
            ("The first thing I would look at is the.", false),
            ("We wrote most of it in Go, and then.", false),
            ("The bottleneck was in the part of.", false),
            ("I worked on this with.", false),
            ("Then we tried a different approach, like.", false),
            ("I think we should have, well.", false),
            ("So that's basically the design that.", false),
            ("It was faster than we expected, so.", false),
            ("It was a hard problem because it's.", false),
            ("What I did was to look at my.", false),
            ("The team wanted to rewrite it if.", false),
            ("The cache, which.", false),
            ("We wanted to go with a.", false),
            // A verb left waiting for its object after a modal.
            (
                "If the pressure stays below 65 despite the fluids, I'd start.",
                false,
            ),
            ("For the pain I would give.", false),
            ("For the index, we'll use.", false),
            ("If the pressure stays low, I'm start.", false),
            // …which may end a wh-clause, and other verbs may end a sentence.
            ("That depends on which one you'd use.", true),
            ("If it still hurts after an hour, I'd stop.", true),
            ("We measured it twice and I'd agree.", true),
            // Still thinking.
            (
                "I'd run explain analyze on it, and, so, let me think.",
                false,
            ),
            ("Some paracetamol for the fever, and, you know.", false),
            ("The drug is, what's it called.", false),
            ("That's a good question. Let me think about that.", false),
            // Stranded without a wh-word: ambiguous, so it waits (the safe side).
            ("Those were the people I reported to.", false),
            // Trailing off.
            ("We moved the pipeline to Rust and then...", false),
            ("We moved the pipeline to Rust and then\u{2026}", false),
            ("We moved the whole thing to Rust, which \u{2014}", false),
            ("We moved the whole thing to Rust, which -", false),
            // No terminal punctuation.
            ("We moved the whole ingestion pipeline to Rust", false),
            // Too few words, not a plain reply.
            ("Python and Java.", false),
            ("Around five years.", false),
            ("Well.", false),
            ("", false),
            ("   ", false),
        ];
        let wrong: Vec<_> = cases
            .iter()
            .filter(|(text, want)| sounds_finished(text) != *want)
            .collect();
        assert!(wrong.is_empty(), "misjudged: {wrong:#?}");
    }

    #[test]
    fn end_phrase_table() {
        let cases: [(&str, Option<&str>); 16] = [
            (
                "We used Kafka. That's my answer.",
                Some("That's my answer."),
            ),
            (
                "We used Kafka, so that's my answer",
                Some("that's my answer"),
            ),
            ("We used Kafka. I'm done.", Some("I'm done.")),
            ("We used Kafka and that's all.", Some("that's all.")),
            (
                "We used Kafka. That is all I have.",
                Some("That is all I have."),
            ),
            ("We used Kafka. End of answer.", Some("End of answer.")),
            (
                "I have nothing more to add.",
                Some("I have nothing more to add."),
            ),
            (
                "We used Kafka. Nothing more to add, thank you.",
                Some("Nothing more to add, thank you."),
            ),
            (
                "We used Kafka. I think that\u{2019}s all.",
                Some("that\u{2019}s all."),
            ),
            (
                "We used Kafka. That's my answer, thanks a lot!",
                Some("That's my answer, thanks a lot!"),
            ),
            ("I'm done with the first part, next is the cache.", None),
            ("We used Kafka and that's all there is to it.", None),
            ("Is that all?", None),
            ("That's all?", None),
            ("We used Kafka. That's all...", None),
            ("We used Kafka and then I'm done.", None),
        ];
        for (text, want) in cases {
            let got = ends_with_end_phrase(text).map(|i| &text[i..]);
            assert_eq!(got, want, "{text:?}");
        }
    }

    #[test]
    fn end_phrase_index_strips_the_phrase() {
        let text = "We sharded by tenant. So yeah, that is my answer.";
        let i = ends_with_end_phrase(text).unwrap();
        assert_eq!(text[..i].trim_end(), "We sharded by tenant. So yeah,");
    }

    #[test]
    fn pauses_in_an_unfinished_clause_are_never_cut() {
        for pause in [2.0, 3.0, 4.0] {
            for opening in [
                "So the main reason we picked Rust was because",
                "So the main reason we picked Rust was.",
                "The first thing I would check is, um.",
                "We measured the latency and.",
                "We moved the whole pipeline to...",
            ] {
                let mut d = answered_in_full();
                d.start_question(0.0);
                assert_eq!(utterance(&mut d, opening, 1.0, 9.0, 9.8), None);
                let resume = 9.0 + pause;
                assert_eq!(poll_over(&mut d, 9.8, resume), None, "{opening:?} {pause}");
                let decision = utterance(
                    &mut d,
                    "memory safety without a collector.",
                    resume,
                    resume + 3.0,
                    resume + 3.7,
                )
                .or_else(|| poll_over(&mut d, resume + 3.7, resume + 5.0))
                .unwrap();
                assert_eq!(
                    decision.reason,
                    TurnEndReason::Silence,
                    "{opening:?} {pause}"
                );
                assert!((decision.answer_end_s - (resume + 3.0)).abs() < 1e-9);
            }
        }
    }

    #[test]
    fn finished_answer_ends_quickly_once_its_final_is_in() {
        let c = TurnConfig::default();
        let mut d = answered_in_full();
        d.start_question(0.0);
        assert_eq!(utterance(&mut d, FINISHED, 1.0, 10.0, 10.5), None);
        let decision = poll_over(&mut d, 10.5, 14.0).unwrap();
        assert_eq!(decision.reason, TurnEndReason::Silence);
        let due = 10.0 + c.finished_silence_s;
        assert!((decision.at_s - due).abs() < 1e-6, "{decision:?}");
        assert_eq!(decision.answer_end_s, 10.0);
        assert_eq!(d.poll(20.0), None, "a decision is returned once");
    }

    #[test]
    fn a_finished_first_point_of_a_long_answer_is_not_cut_at_its_pause() {
        // "…yields up, prices down." 16 s into an answer expected to run 45 s or more, then a
        // 2.5 s thinking pause.
        let config = TurnConfig {
            learn_pauses: false,
            ..TurnConfig::default()
        };
        let mut d = TurnDetector::new(config);
        d.set_expected_answer_s(Some(45.0));
        d.start_question(0.0);
        let first = "Duration measures price sensitivity to yield: yields up, prices down.";
        assert_eq!(utterance(&mut d, first, 0.5, 16.7, 17.2), None);
        assert_eq!(poll_over(&mut d, 17.2, 19.2), None, "2.5 s pause not cut");
        let second = "It is only a first order estimate, so convexity matters for big moves.";
        assert_eq!(utterance(&mut d, second, 19.2, 48.0, 48.5), None);
        let decision = poll_over(&mut d, 48.5, 58.0).unwrap();
        assert_eq!(decision.reason, TurnEndReason::Silence);
        assert!(
            (decision.at_s - (48.0 + config.finished_silence_s)).abs() < 0.06,
            "at the expected length: {decision:?}"
        );
        // Without an expected length, 16 s of speech is an explanation, not a reply: the same
        // pause is not cut either, nor one after two sentences in 9 s.
        for end in [16.7, 9.5] {
            let mut open = TurnDetector::new(config);
            open.start_question(0.0);
            assert_eq!(utterance(&mut open, first, 0.5, end, end + 0.5), None);
            assert_eq!(poll_over(&mut open, end + 0.5, end + 2.5), None, "{end}");
        }
    }

    #[test]
    fn a_speaker_who_pauses_after_finished_sentences_gets_that_patience() {
        // Question 1: "…the statute of frauds applies." (whisper dropped the "but"), a 2.6 s
        // pause that the early-answer patience covers, and the answer goes on.
        let mut d = TurnDetector::default();
        d.set_expected_answer_s(Some(36.0));
        d.start_question(0.0);
        let first = "For goods over five hundred dollars the statute of frauds applies.";
        assert_eq!(utterance(&mut d, first, 0.5, 12.0, 12.5), None);
        assert_eq!(
            poll_over(&mut d, 12.5, 14.6),
            None,
            "early in the answer: not cut"
        );
        assert_eq!(
            d.learned_pause_s(),
            0.0,
            "nothing learned before the speech resumes"
        );
        let rest = "An email exchange can satisfy it, and the signature can be typed.";
        assert_eq!(utterance(&mut d, rest, 14.6, 30.0, 30.4), None);
        assert!((d.learned_pause_s() - 2.6).abs() < 1e-9);
        let end = poll_over(&mut d, 30.4, 40.0).expect("the answer ends");
        assert!(
            (end.at_s - 33.1).abs() < 0.06,
            "2.6 s + 0.5 s, over the 3 s early-answer wait: {end:?}"
        );

        // Question 2: a longer pause of the same kind later in an answer: the learned pause
        // keeps listening past the early-answer wait.
        d.set_expected_answer_s(Some(45.0));
        d.start_question(41.0);
        let first = "Ordinary PR advice usually does not qualify for the privilege.";
        assert_eq!(utterance(&mut d, first, 41.5, 74.0, 74.4), None);
        assert_eq!(
            poll_over(&mut d, 74.4, 76.8),
            None,
            "a 2.8 s pause is not cut"
        );
        let rest = "If outside counsel hired the consultant, it can survive.";
        assert_eq!(utterance(&mut d, rest, 76.8, 84.0, 84.4), None);
        assert!((d.learned_pause_s() - 2.8).abs() < 1e-9);
        let end = poll_over(&mut d, 84.4, 94.0).expect("the answer ends");
        assert!((end.at_s - 87.3).abs() < 0.06, "2.8 s + 0.5 s: {end:?}");
        // An answer as long as the question calls for ends on the finished rule again.
        d.set_expected_answer_s(Some(30.0));
        d.start_question(88.0);
        assert_eq!(utterance(&mut d, rest, 88.5, 119.0, 119.3), None);
        let end = poll_over(&mut d, 119.3, 124.0).expect("the answer ends");
        let finished = d.config().finished_silence_s;
        assert!((end.at_s - (119.0 + finished)).abs() < 0.06, "{end:?}");
        // Plain short replies are not held back, and a reset forgets the speaker.
        d.set_expected_answer_s(None);
        d.start_question(121.0);
        assert!(utterance(&mut d, "Yes.", 121.5, 122.0, 122.3).is_none());
        assert!(poll_over(&mut d, 122.3, 123.2).is_some());
        d.reset();
        assert_eq!(d.learned_pause_s(), 0.0);
    }

    #[test]
    fn a_long_answer_without_its_final_period_ends_after_a_medium_silence() {
        let text = "so I would check the drains and the lines and remove the source";
        assert!(ends_on_content_word(text));
        assert!(!ends_on_content_word("and then I would start the"));
        assert!(!ends_on_content_word("that is all."));
        let mut d = TurnDetector::default();
        d.set_expected_answer_s(Some(50.0));
        d.start_question(0.0);
        assert_eq!(utterance(&mut d, text, 0.5, 55.0, 55.5), None);
        let decision = poll_over(&mut d, 55.5, 60.0).unwrap();
        assert!((decision.at_s - 56.2).abs() < 0.06, "{decision:?}");
        // Early in the answer the same ending waits the unfinished-clause time ("I'd start").
        let mut early = TurnDetector::default();
        early.set_expected_answer_s(Some(60.0));
        early.start_question(0.0);
        assert_eq!(
            utterance(
                &mut early,
                "despite the fluids I would start",
                0.5,
                36.0,
                36.5
            ),
            None
        );
        assert_eq!(
            poll_over(&mut early, 36.5, 40.4),
            None,
            "a 4 s pause is not cut"
        );
    }

    #[test]
    fn the_gap_between_two_sentences_is_not_the_end() {
        // Whisper writes the period between two sentences of a fluent speaker too, and the
        // gap there runs about half a second, a little more to the VAD (a soft last sound).
        let mut d = answered_in_full();
        d.start_question(0.0);
        let first = "I would give some paracetamol for the fever and start some fluids.";
        assert_eq!(utterance(&mut d, first, 0.5, 6.0, 6.4), None);
        assert_eq!(poll_over(&mut d, 6.4, 6.7), None, "a 0.7 s gap is not cut");
        let rest = "Then I would wait for the blood results before the antibiotics.";
        assert_eq!(utterance(&mut d, rest, 6.7, 10.5, 10.9), None);
        let decision = poll_over(&mut d, 10.9, 12.0).expect("the answer ends");
        assert_eq!(decision.reason, TurnEndReason::Silence);
        assert_eq!(decision.answer_end_s, 10.5);
    }

    #[test]
    fn short_finished_answer_gets_the_longer_silence() {
        let mut d = TurnDetector::default();
        d.start_question(0.0);
        let text = "I led the team that rebuilt it.";
        assert_eq!(utterance(&mut d, text, 1.0, 3.6, 4.1), None);
        let decision = poll_over(&mut d, 4.1, 6.0).unwrap();
        assert_eq!(decision.reason, TurnEndReason::Silence);
        let due = 3.6 + d.config().short_answer_silence_s;
        assert!((decision.at_s - due).abs() < 1e-6, "{decision:?}");
    }

    #[test]
    fn plain_short_reply_ends_after_the_short_answer_silence() {
        for reply in ["Yes.", "No, I haven't.", "I don't know."] {
            let mut d = TurnDetector::default();
            d.start_question(0.0);
            assert_eq!(utterance(&mut d, reply, 1.0, 1.6, 2.2), None);
            let decision = poll_over(&mut d, 2.2, 4.0).unwrap();
            assert_eq!(decision.reason, TurnEndReason::Silence, "{reply:?}");
            let due = 1.6 + d.config().short_answer_silence_s;
            assert!((decision.at_s - due).abs() < 1e-6, "{reply:?} {decision:?}");
        }
    }

    #[test]
    fn few_words_or_little_speech_waits_long() {
        // Too few words, and four words spoken in under the minimum speech.
        for (text, end) in [("Around five years.", 2.5), ("I used it daily.", 2.8)] {
            let mut d = TurnDetector::default();
            d.start_question(0.0);
            assert_eq!(utterance(&mut d, text, 1.0, end, end + 0.6), None);
            assert_eq!(poll_over(&mut d, end + 0.6, end + 4.4), None, "{text:?}");
            let decision = poll_over(&mut d, end + 4.4, end + 5.0).unwrap();
            assert_eq!(decision.reason, TurnEndReason::LongSilence, "{text:?}");
        }
    }

    #[test]
    fn late_final_delays_but_does_not_lose_the_decision() {
        let mut d = answered_in_full();
        d.start_question(0.0);
        d.voice_start(5.0);
        d.voice_end(15.0);
        assert_eq!(poll_over(&mut d, 15.0, 17.5), None, "final still pending");
        assert_eq!(
            d.next_deadline(),
            Some(23.0),
            "only the safety cap is armed"
        );
        d.final_text(FINISHED, 5.0, 15.3);
        let decision = d.poll(17.51).unwrap();
        assert_eq!(decision.reason, TurnEndReason::Silence);
        assert_eq!(decision.at_s, 17.51);
        assert_eq!(decision.answer_end_s, 15.0);
    }

    #[test]
    fn spoken_end_phrase_ends_right_after_its_final() {
        let mut d = TurnDetector::default();
        d.start_question(0.0);
        let text = "We sharded the table by tenant, and that's my answer";
        assert_eq!(utterance(&mut d, text, 1.0, 10.0, 10.25), None);
        let decision = poll_over(&mut d, 10.25, 11.0).unwrap();
        assert_eq!(decision.reason, TurnEndReason::SpokenEnd);
        assert!((decision.at_s - 10.3).abs() < 1e-6, "{decision:?}");
        // A final later than the tiny silence ends the turn at once.
        let mut d = TurnDetector::default();
        d.start_question(0.0);
        assert_eq!(
            utterance(&mut d, text, 1.0, 10.0, 10.9).map(|x| x.reason),
            Some(TurnEndReason::SpokenEnd)
        );
    }

    #[test]
    fn end_phrase_mid_answer_does_not_end_the_turn() {
        let mut d = answered_in_full();
        d.start_question(0.0);
        let first = "I'm done with the first part, next is the part about the";
        assert_eq!(utterance(&mut d, first, 1.0, 6.0, 6.6), None);
        assert_eq!(poll_over(&mut d, 6.6, 9.5), None);
        let second = "cache, which we sized from the traffic logs.";
        let decision = utterance(&mut d, second, 9.5, 14.0, 14.5)
            .or_else(|| poll_over(&mut d, 14.5, 16.0))
            .unwrap();
        assert_eq!(decision.reason, TurnEndReason::Silence);
        assert!(decision.at_s >= 14.6 - 1e-9);
    }

    #[test]
    fn client_done_mid_voice_ends_immediately() {
        let mut d = TurnDetector::default();
        d.start_question(0.0);
        d.voice_start(1.0);
        assert_eq!(poll_over(&mut d, 1.0, 5.0), None);
        d.client_done(5.2);
        assert_eq!(d.next_deadline(), Some(5.2));
        let decision = d.poll(5.25).unwrap();
        assert_eq!(decision.reason, TurnEndReason::ClientDone);
        assert_eq!(decision.at_s, 5.2);
        assert_eq!(decision.answer_end_s, 5.2);
        assert_eq!(d.poll(6.0), None);
    }

    #[test]
    fn voice_resuming_during_the_wait_cancels_the_decision() {
        let mut d = answered_in_full();
        d.start_question(0.0);
        assert_eq!(utterance(&mut d, FINISHED, 2.0, 8.0, 8.4), None);
        let finished = d.config().finished_silence_s;
        assert_eq!(d.next_deadline(), Some(8.0 + finished));
        d.voice_start(8.5);
        assert_eq!(poll_over(&mut d, 10.5, 13.0), None);
        d.voice_end(13.0);
        assert_eq!(
            poll_over(&mut d, 13.0, 13.7),
            None,
            "waits for the new final"
        );
        d.final_text("And we kept the old one as a fallback.", 8.5, 13.3);
        let decision = d.poll(13.0 + finished).unwrap();
        assert_eq!(decision.reason, TurnEndReason::Silence);
        assert_eq!(decision.answer_end_s, 13.0);
    }

    #[test]
    fn no_answer_at_all() {
        let mut d = TurnDetector::default();
        d.start_question(3.0);
        assert_eq!(d.next_deadline(), Some(15.0));
        assert_eq!(poll_over(&mut d, 3.0, 14.9), None);
        let decision = d.poll(15.0).unwrap();
        assert_eq!(decision.reason, TurnEndReason::NoAnswer);
        assert_eq!(decision.answer_end_s, 3.0);
    }

    #[test]
    fn noise_without_words_is_still_no_answer() {
        let mut d = TurnDetector::default();
        d.start_question(0.0);
        assert_eq!(utterance(&mut d, "", 10.0, 10.2, 10.8), None);
        let decision = poll_over(&mut d, 10.8, 16.0).unwrap();
        assert_eq!(decision.reason, TurnEndReason::NoAnswer);
        assert!((decision.at_s - 14.7).abs() < 1e-6, "{decision:?}");
    }

    #[test]
    fn unfinished_answer_ends_after_the_long_silence() {
        let mut d = TurnDetector::default();
        d.start_question(0.0);
        let text = "The part I would change first is the scheduler, because";
        assert_eq!(utterance(&mut d, text, 1.0, 9.0, 9.6), None);
        assert_eq!(poll_over(&mut d, 9.6, 13.49), None);
        let decision = d.poll(13.5).unwrap();
        assert_eq!(decision.reason, TurnEndReason::LongSilence);
    }

    #[test]
    fn long_silence_cap_when_the_final_never_comes() {
        let mut d = TurnDetector::default();
        d.start_question(0.0);
        d.voice_start(1.0);
        d.partial("We moved the pipeline", 4.0);
        d.voice_end(6.0);
        assert_eq!(poll_over(&mut d, 6.0, 13.99), None);
        let decision = d.poll(14.0).unwrap();
        assert_eq!(decision.reason, TurnEndReason::LongSilence);
        assert_eq!(decision.answer_end_s, 6.0);
    }

    #[test]
    fn an_answer_short_of_most_of_its_expected_length_gets_patience() {
        // 33 s of speech to a question whose full answers run 60 s or more (55 %): a
        // finished-sounding sentence is more likely a point before a pause than the end.
        let c = TurnConfig::default();
        let mut d = TurnDetector::default();
        d.set_expected_answer_s(Some(60.0));
        d.start_question(0.0);
        assert_eq!(utterance(&mut d, FINISHED, 1.0, 34.0, 34.4), None);
        assert_eq!(
            poll_over(&mut d, 34.4, 34.0 + c.early_finished_silence_s - 0.05),
            None
        );
        assert!(d.poll(34.0 + c.early_finished_silence_s).is_some());
        // So does one at 90 %: whisper writes a period into a sentence cut by a pause late in an
        // answer too ("…I repeat it, and verb." for "…and the [pause] troponin").
        let mut d = TurnDetector::default();
        d.set_expected_answer_s(Some(60.0));
        d.start_question(0.0);
        assert_eq!(utterance(&mut d, FINISHED, 1.0, 55.0, 55.4), None);
        assert_eq!(
            poll_over(&mut d, 55.4, 55.0 + c.early_finished_silence_s - 0.05),
            None
        );
        // At the full expected length the short finished silence applies.
        let mut d = TurnDetector::default();
        d.set_expected_answer_s(Some(60.0));
        d.start_question(0.0);
        assert_eq!(utterance(&mut d, FINISHED, 1.0, 62.0, 62.4), None);
        assert!(poll_over(&mut d, 62.4, 62.0 + c.finished_silence_s + 0.05).is_some());
    }

    #[test]
    fn a_long_answer_to_a_question_without_a_length_gets_patience() {
        // 25 s of speech to a question that sets no length: a finished-sounding sentence is
        // no proof of an end (whisper drops a trailing "but"), so it waits the early silence.
        let mut d = TurnDetector::default();
        d.start_question(0.0);
        let c = *d.config();
        assert_eq!(utterance(&mut d, FINISHED, 1.0, 26.0, 26.4), None);
        assert_eq!(
            poll_over(&mut d, 26.4, 26.0 + c.early_finished_silence_s - 0.05),
            None
        );
        let end = d
            .poll(26.0 + c.early_finished_silence_s)
            .expect("ends after the early silence");
        assert_eq!(end.reason, TurnEndReason::Silence);
        // So does a sentence of a few seconds ("…so it's all." for "so it's all [pause]
        // internal"); only a short reply to the same question ends at the short silence.
        let mut d = TurnDetector::default();
        d.start_question(0.0);
        assert_eq!(utterance(&mut d, FINISHED, 1.0, 7.0, 7.4), None);
        assert_eq!(
            poll_over(&mut d, 7.4, 7.0 + c.early_finished_silence_s - 0.05),
            None
        );
        let mut d = TurnDetector::default();
        d.start_question(0.0);
        let reply = "I led the team that rebuilt it.";
        assert_eq!(utterance(&mut d, reply, 1.0, 3.6, 4.0), None);
        assert!(poll_over(&mut d, 4.0, 3.6 + c.short_answer_silence_s + 0.05).is_some());
    }

    #[test]
    fn max_duration_caps_a_stuck_vad() {
        let mut d = TurnDetector::default();
        d.start_question(0.0);
        d.voice_start(0.5);
        assert_eq!(d.poll(299.0), None);
        let decision = d.poll(300.0).unwrap();
        assert_eq!(decision.reason, TurnEndReason::MaxDuration);
        assert_eq!(decision.answer_end_s, 300.0);
    }

    #[test]
    fn forced_cuts_mid_voice_do_not_end_the_turn() {
        let mut d = TurnDetector::default();
        // A question expecting about this much, so that the short finished silence applies.
        d.set_expected_answer_s(Some(30.0));
        d.start_question(0.0);
        d.voice_start(1.0);
        d.final_text(
            "We moved the ingestion pipeline to Rust last year.",
            1.0,
            29.0,
        );
        assert_eq!(poll_over(&mut d, 29.0, 35.0), None);
        d.voice_end(35.0);
        d.final_text("And then we kept going.", 29.0, 35.3);
        let due = 35.0 + d.config().finished_silence_s;
        assert_eq!(poll_over(&mut d, 35.0, due - 0.01), None);
        assert_eq!(d.poll(due).map(|x| x.reason), Some(TurnEndReason::Silence));
    }

    #[test]
    fn start_question_forgets_the_previous_answer() {
        let mut d = answered_in_full();
        assert_eq!(d.poll(100.0), None, "idle before the first question");
        d.start_question(0.0);
        assert!(
            utterance(&mut d, FINISHED, 1.0, 10.0, 10.4)
                .or_else(|| poll_over(&mut d, 10.4, 11.0))
                .is_some()
        );
        d.start_question(20.0);
        assert_eq!(d.transcript(), "");
        // A late final of the previous answer is ignored.
        d.final_text("Stale.", 18.0, 19.0);
        assert_eq!(d.transcript(), "");
        assert_eq!(d.next_deadline(), Some(32.0));
        d.reset();
        assert_eq!(d.next_deadline(), None);
        assert_eq!(d.poll(1000.0), None);
    }

    #[test]
    fn voice_active_at_the_question_is_counted_from_the_question() {
        let mut d = TurnDetector::default();
        d.set_expected_answer_s(Some(30.0));
        d.voice_start(5.0);
        d.start_question(10.0);
        assert_eq!(poll_over(&mut d, 10.0, 40.0), None);
        d.voice_end(40.0);
        d.final_text(FINISHED, 5.0, 40.3);
        let due = 40.0 + d.config().finished_silence_s;
        assert_eq!(d.poll(due).map(|x| x.reason), Some(TurnEndReason::Silence));
    }

    #[test]
    fn finals_without_vad_events_still_work() {
        let mut d = answered_in_full();
        d.start_question(0.0);
        d.final_text(FINISHED, 1.0, 10.0);
        let due = 10.0 + d.config().finished_silence_s;
        assert_eq!(d.poll(due - 0.1), None);
        assert_eq!(d.poll(due).map(|x| x.reason), Some(TurnEndReason::Silence));
    }

    #[test]
    fn config_validates_and_loads_from_toml() {
        assert_eq!(TurnConfig::default().validate(), Ok(()));
        let c: TurnConfig = toml::from_str("finished_silence_s = 0.7").unwrap();
        assert_eq!(c.finished_silence_s, 0.7);
        assert_eq!(c.unfinished_silence_s, 4.5);
        let bad = TurnConfig {
            unfinished_silence_s: 9.0,
            ..TurnConfig::default()
        };
        assert!(matches!(bad.validate(), Err(TurnConfigError::Order { .. })));
        let bad = TurnConfig {
            no_answer_s: f64::NAN,
            ..TurnConfig::default()
        };
        assert!(matches!(
            bad.validate(),
            Err(TurnConfigError::NotNonNegative {
                field: "no_answer_s",
                ..
            })
        ));
    }

    const TEXTS: &[&str] = &[
        FINISHED,
        "We moved the pipeline to Rust because",
        "The main reason was.",
        "So that's my answer.",
        "I'm done with the first part, next is the",
        "Yes.",
        "",
        "Around five years.",
        "And then we moved everything to...",
        "It took a while, but it went well.",
    ];

    /// A timeline event.
    #[derive(Debug, Clone, Copy)]
    enum Ev {
        VoiceStart,
        VoiceEnd,
        Final { text: usize, start: f64, end: f64 },
        Partial,
        ClientDone,
    }

    proptest! {
        #[test]
        fn random_timelines_respect_the_rules(
            question_at in 0.0f64..5.0,
            utterances in prop::collection::vec(
                // Gaps of at least the segmenter's pause: shorter ones share an utterance.
                (0.6f64..9.0, 0.1f64..12.0, 0usize..TEXTS.len(), 0.0f64..3.0),
                0..8,
            ),
            client_done in proptest::option::weighted(0.2, 0.0f64..80.0),
        ) {
            let config = TurnConfig::default();
            let mut events: Vec<(f64, Ev)> = Vec::new();
            let (mut t, mut last_final) = (question_at, question_at);
            for &(gap, len, text, delay) in &utterances {
                let (start, end) = (t + gap, t + gap + len);
                events.push((start, Ev::VoiceStart));
                events.push((start + len / 2.0, Ev::Partial));
                events.push((end, Ev::VoiceEnd));
                last_final = last_final.max(end + delay);
                events.push((last_final, Ev::Final { text, start, end: end + 0.3 }));
                t = end;
            }
            if let Some(at) = client_done {
                events.push((question_at + at, Ev::ClientDone));
            }
            // Stable: events at equal times keep their causal order.
            events.sort_by(|a, b| a.0.total_cmp(&b.0));
            let horizon = events.iter().map(|e| e.0).fold(question_at, f64::max) + 20.0;

            let mut d = TurnDetector::new(config);
            d.start_question(question_at);
            let (mut voice, mut ended, mut delivered) = (false, 0usize, 0usize);
            let mut heard = String::new();
            let mut decisions = 0;
            let mut next = 0;
            let steps = ((horizon - question_at) / 0.05).ceil() as usize;
            for step in 0..=steps {
                let now = question_at + step as f64 * 0.05;
                while next < events.len() && events[next].0 <= now {
                    let (at, ev) = events[next];
                    match ev {
                        Ev::VoiceStart => { voice = true; d.voice_start(at); }
                        Ev::VoiceEnd => { voice = false; ended += 1; d.voice_end(at); }
                        Ev::Final { text, start, end } => {
                            delivered += 1;
                            if !TEXTS[text].is_empty() {
                                if !heard.is_empty() { heard.push(' '); }
                                heard.push_str(TEXTS[text]);
                            }
                            d.final_text(TEXTS[text], start, end);
                        }
                        Ev::Partial => d.partial("we moved", at),
                        Ev::ClientDone => d.client_done(at),
                    }
                    next += 1;
                }
                let Some(x) = d.poll(now) else { continue };
                decisions += 1;
                prop_assert_eq!(decisions, 1, "at most one decision per question");
                prop_assert!(x.at_s <= now + TIME_EPS);
                if x.reason == TurnEndReason::ClientDone {
                    continue;
                }
                prop_assert!(!voice, "decided while voice was active: {:?}", x);
                prop_assert!(delivered >= ended, "decided before a pending final: {:?}", x);
                let silence = now - x.answer_end_s;
                match x.reason {
                    TurnEndReason::Silence => {
                        prop_assert!(sounds_finished(&heard), "{:?}", heard);
                        prop_assert!(silence >= config.finished_silence_s - TIME_EPS);
                    }
                    TurnEndReason::SpokenEnd => {
                        prop_assert!(ends_with_end_phrase(&heard).is_some(), "{:?}", heard);
                    }
                    TurnEndReason::LongSilence => {
                        prop_assert!(silence >= config.unfinished_silence_s - TIME_EPS);
                        prop_assert!(silence > 4.0);
                    }
                    TurnEndReason::NoAnswer => {
                        prop_assert!(heard.is_empty());
                        prop_assert!(now >= question_at + config.no_answer_s - TIME_EPS);
                    }
                    other => prop_assert!(false, "unexpected {:?}", other),
                }
            }
            prop_assert_eq!(decisions, 1, "every question ends");
        }

        #[test]
        fn text_helpers_never_panic(text in "\\PC{0,80}") {
            let _ = sounds_finished(&text);
            if let Some(i) = ends_with_end_phrase(&text) {
                prop_assert!(text.is_char_boundary(i) && i < text.len());
            }
        }
    }
}
