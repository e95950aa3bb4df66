//! Streaming resampling to 16 kHz mono with rubato's synchronous FFT resampler.
//!
//! Input arrives in chunks of any size; it is gathered into the resampler's fixed input block,
//! so the output depends only on the samples, never on how they were chunked.

use audioadapter_buffers::direct::InterleavedSlice;
use rubato::{Fft, FixedSync, Indexing, Resampler};

use super::{AudioError, TARGET_RATE, check_rate};

/// Resamples one mono stream to [`TARGET_RATE`], keeping state between calls.
pub struct StreamResampler {
    input_rate: u32,
    inner: Option<Fft<f32>>,
    /// Input not yet processed (less than one block).
    pending: Vec<f32>,
    /// One output block, reused.
    block_out: Vec<f32>,
    /// Output frames still to discard (the resampler's delay).
    delay_left: usize,
    /// Input frames pushed so far, to know how much output a flush owes.
    frames_in: u64,
    /// Output frames emitted so far.
    frames_out: u64,
}

impl std::fmt::Debug for StreamResampler {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("StreamResampler")
            .field("input_rate", &self.input_rate)
            .field("pending", &self.pending.len())
            .finish_non_exhaustive()
    }
}

impl StreamResampler {
    /// A resampler from `input_rate` (8–96 kHz) to 16 kHz.
    pub fn new(input_rate: u32) -> Result<Self, AudioError> {
        check_rate(input_rate)?;
        let (inner, block_out, delay) = if input_rate == TARGET_RATE {
            (None, Vec::new(), 0)
        } else {
            // About 40 ms of input per block: low latency, efficient FFT sizes.
            let chunk = (input_rate as usize / 25).max(256);
            let fft = Fft::<f32>::new(
                input_rate as usize,
                TARGET_RATE as usize,
                chunk,
                1,
                FixedSync::Input,
            )
            .map_err(|e| AudioError::Unsupported {
                source_name: "resampler".into(),
                message: e.to_string(),
            })?;
            let out = vec![0.0; fft.output_frames_max()];
            let delay = fft.output_delay();
            (Some(fft), out, delay)
        };
        Ok(StreamResampler {
            input_rate,
            inner,
            pending: Vec::new(),
            block_out,
            delay_left: delay,
            frames_in: 0,
            frames_out: 0,
        })
    }

    /// The input rate this resampler was built for.
    pub fn input_rate(&self) -> u32 {
        self.input_rate
    }

    /// Pushes input samples; appends the 16 kHz output that is ready to `out`.
    /// Samples are clamped to [-1, 1] (non-finite ones become silence): float audio out of
    /// range is clipped audio, and the FFT must never see values it cannot represent.
    pub fn push(&mut self, input: &[f32], out: &mut Vec<f32>) -> Result<(), AudioError> {
        self.frames_in += input.len() as u64;
        let in_range = |s: &f32| {
            if s.is_finite() {
                s.clamp(-1.0, 1.0)
            } else {
                0.0
            }
        };
        let Some(fft) = self.inner.as_mut() else {
            out.extend(input.iter().map(in_range));
            self.frames_out += input.len() as u64;
            return Ok(());
        };
        self.pending.extend(input.iter().map(in_range));
        let need = fft.input_frames_next();
        let mut offset = 0;
        while self.pending.len() - offset >= need {
            let block = &self.pending[offset..offset + need];
            run_block(fft, block, None, &mut self.block_out)?;
            let produced = fft.output_frames_next().min(self.block_out.len());
            emit(
                &self.block_out[..produced],
                &mut self.delay_left,
                out,
                &mut self.frames_out,
            );
            offset += need;
        }
        self.pending.drain(..offset);
        Ok(())
    }

    /// Pushes out everything still held (end of stream), so that the total output matches the
    /// input duration.
    pub fn flush(&mut self, out: &mut Vec<f32>) -> Result<(), AudioError> {
        let Some(fft) = self.inner.as_mut() else {
            return Ok(());
        };
        let owed = (self.frames_in as f64 * f64::from(TARGET_RATE) / f64::from(self.input_rate))
            .round() as u64;
        let need = fft.input_frames_next();
        let mut guard = 0;
        while self.frames_out < owed && guard < 64 {
            let take = self.pending.len().min(need);
            let mut block = vec![0.0; need];
            block[..take].copy_from_slice(&self.pending[..take]);
            self.pending.drain(..take);
            run_block(fft, &block, Some(take), &mut self.block_out)?;
            let produced = fft.output_frames_next().min(self.block_out.len());
            let remaining = (owed - self.frames_out) as usize;
            let mut tmp = Vec::new();
            emit(
                &self.block_out[..produced],
                &mut self.delay_left,
                &mut tmp,
                &mut 0,
            );
            let n = tmp.len().min(remaining);
            out.extend_from_slice(&tmp[..n]);
            self.frames_out += n as u64;
            guard += 1;
        }
        Ok(())
    }

    /// Forgets all state, ready for a new stream at the same rate.
    pub fn reset(&mut self) {
        if let Some(fft) = self.inner.as_mut() {
            fft.reset();
            self.delay_left = fft.output_delay();
        }
        self.pending.clear();
        self.frames_in = 0;
        self.frames_out = 0;
    }
}

fn run_block(
    fft: &mut Fft<f32>,
    block: &[f32],
    partial: Option<usize>,
    out: &mut [f32],
) -> Result<(), AudioError> {
    let err = |e: String| AudioError::Unsupported {
        source_name: "resampler".into(),
        message: e,
    };
    let input = InterleavedSlice::new(block, 1, block.len()).map_err(|e| err(e.to_string()))?;
    let capacity = out.len();
    let mut output = InterleavedSlice::new_mut(out, 1, capacity).map_err(|e| err(e.to_string()))?;
    let indexing = partial.map(|n| Indexing::new().partial_len(n));
    fft.process_into_buffer(&input, &mut output, indexing.as_ref())
        .map_err(|e| err(e.to_string()))?;
    Ok(())
}

fn emit(block: &[f32], delay_left: &mut usize, out: &mut Vec<f32>, frames_out: &mut u64) {
    let skip = (*delay_left).min(block.len());
    *delay_left -= skip;
    out.extend_from_slice(&block[skip..]);
    *frames_out += (block.len() - skip) as u64;
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::audio::rms_dbfs;

    fn sine(rate: u32, freq: f32, amp: f32, seconds: f32) -> Vec<f32> {
        let n = (rate as f32 * seconds) as usize;
        (0..n)
            .map(|i| amp * (2.0 * std::f32::consts::PI * freq * i as f32 / rate as f32).sin())
            .collect()
    }

    /// Frequency by counting zero crossings over the steady middle of the signal.
    fn frequency(samples: &[f32], rate: u32) -> f32 {
        let mid = &samples[samples.len() / 4..samples.len() * 3 / 4];
        let crossings = mid.windows(2).filter(|w| w[0] <= 0.0 && w[1] > 0.0).count();
        crossings as f32 * rate as f32 / mid.len() as f32
    }

    #[test]
    fn sine_1khz_at_44k1_keeps_frequency_and_level() {
        let input = sine(44_100, 1000.0, 0.5, 2.0);
        let mut r = StreamResampler::new(44_100).unwrap();
        let mut out = Vec::new();
        r.push(&input, &mut out).unwrap();
        r.flush(&mut out).unwrap();
        assert_eq!(out.len(), 32_000);
        let f = frequency(&out, 16_000);
        assert!((f - 1000.0).abs() < 2.0, "frequency {f}");
        let mid = |s: &[f32]| rms_dbfs(&s[s.len() / 4..s.len() * 3 / 4]);
        let delta = (mid(&out) - mid(&input)).abs();
        assert!(delta < 0.5, "level changed by {delta} dB");
    }

    #[test]
    fn output_does_not_depend_on_chunking() {
        let input = sine(48_000, 440.0, 0.3, 1.3);
        let run = |sizes: &[usize]| {
            let mut r = StreamResampler::new(48_000).unwrap();
            let mut out = Vec::new();
            let mut pos = 0;
            let mut k = 0;
            while pos < input.len() {
                let n = sizes[k % sizes.len()].min(input.len() - pos);
                r.push(&input[pos..pos + n], &mut out).unwrap();
                pos += n;
                k += 1;
            }
            r.flush(&mut out).unwrap();
            out
        };
        let whole = run(&[input.len()]);
        for sizes in [&[1usize][..], &[160, 7, 4000], &[960], &[333, 1]] {
            assert_eq!(run(sizes), whole, "chunking {sizes:?} changed the output");
        }
    }

    #[test]
    fn absurd_rates_are_refused() {
        assert!(StreamResampler::new(4_000).is_err());
        assert!(StreamResampler::new(192_000).is_err());
        assert!(StreamResampler::new(8_000).is_ok());
    }
}
