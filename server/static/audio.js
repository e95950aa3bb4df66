// Audio for the interview page: the microphone (capture, level, test recordings, 16-bit PCM
// chunks for the WebSocket fallback), WAV encoding, and playback of question audio that
// arrives as PCM on the socket.

const WORKLET_URL = "/assets/pcm-worklet.js";

/** Microphone constraints. Raw audio transcribes best (no noise suppression or automatic gain,
 * which distort speech); echo cancellation stays on unless the applicant wears headphones,
 * so that the interviewer's voice from loudspeakers is not taken for an answer. */
export function micConstraints(headphones) {
  return {
    audio: {
      echoCancellation: !headphones,
      noiseSuppression: false,
      autoGainControl: false,
      channelCount: 1,
    },
    video: false,
  };
}

/** The level meter's value (0–1) for an RMS amplitude: -60 dBFS → 0, 0 dBFS → 1. */
export function levelToMeter(rms) {
  if (!(rms > 0)) return 0;
  const db = 20 * Math.log10(rms);
  return Math.min(1, Math.max(0, (db + 60) / 60));
}

/** The open microphone: a MediaStream plus an AudioContext graph that reports the level and
 * hands out 16-bit PCM chunks. */
export class Microphone {
  /** Asks for the microphone and starts the capture graph. Throws the getUserMedia error. */
  static async open({ headphones = false } = {}) {
    const stream = await navigator.mediaDevices.getUserMedia(micConstraints(headphones));
    const context = new AudioContext({ latencyHint: "interactive" });
    try {
      await context.audioWorklet.addModule(WORKLET_URL);
    } catch (error) {
      stream.getTracks().forEach((t) => t.stop());
      await context.close();
      throw error;
    }
    return new Microphone(stream, context);
  }

  constructor(stream, context) {
    this.stream = stream;
    this.context = context;
    this.sampleRate = context.sampleRate;
    this.levelListeners = new Set();
    this.pcmListeners = new Set();
    const source = context.createMediaStreamSource(stream);
    this.node = new AudioWorkletNode(context, "pcm-capture", {
      numberOfInputs: 1,
      numberOfOutputs: 1,
      outputChannelCount: [1],
      processorOptions: { chunkFrames: Math.round(context.sampleRate / 10) },
    });
    this.node.port.onmessage = (event) => {
      const message = event.data;
      if (message.pcm) {
        for (const listener of this.pcmListeners) listener(message.pcm);
      } else if (typeof message.rms === "number") {
        for (const listener of this.levelListeners) listener(message.rms, message.peak);
      }
    };
    // The worklet is pulled through a silent gain into the destination (an unconnected node
    // may not be processed); nothing is heard.
    const mute = context.createGain();
    mute.gain.value = 0;
    source.connect(this.node).connect(mute).connect(context.destination);
    this.source = source;
  }

  /** The microphone track (for WebRTC). */
  get track() {
    return this.stream.getAudioTracks()[0];
  }

  /** Calls `listener(rms, peak)` about twenty times a second; returns an unsubscribe. */
  onLevel(listener) {
    this.levelListeners.add(listener);
    return () => this.levelListeners.delete(listener);
  }

  /** Calls `listener(ArrayBuffer of Int16 PCM)` for every 100 ms chunk; returns an unsubscribe. */
  onPcm(listener) {
    this.pcmListeners.add(listener);
    return () => this.pcmListeners.delete(listener);
  }

  /** Records `seconds` of audio; resolves to one Int16Array. */
  record(seconds) {
    const wanted = Math.round(seconds * this.sampleRate);
    const parts = [];
    let have = 0;
    return new Promise((resolve) => {
      const stop = this.onPcm((buffer) => {
        const chunk = new Int16Array(buffer);
        parts.push(chunk);
        have += chunk.length;
        if (have >= wanted) {
          stop();
          const all = new Int16Array(wanted);
          let at = 0;
          for (const part of parts) {
            const take = Math.min(part.length, wanted - at);
            all.set(part.subarray(0, take), at);
            at += take;
          }
          resolve(all);
        }
      });
    });
  }

  /** Applies the headphones choice to the open track (best effort). */
  async setHeadphones(headphones) {
    try {
      await this.track.applyConstraints(micConstraints(headphones).audio);
    } catch {
      // Not every browser changes echo cancellation on a live track; the choice applies
      // the next time the microphone opens.
    }
  }

  async resume() {
    if (this.context.state === "suspended") await this.context.resume();
  }
}

/** A 16-bit mono WAV file of `samples` (Int16Array) at `rate`. */
export function encodeWav(samples, rate) {
  const header = new ArrayBuffer(44);
  const view = new DataView(header);
  const ascii = (offset, text) => {
    for (let i = 0; i < text.length; i++) view.setUint8(offset + i, text.charCodeAt(i));
  };
  const dataBytes = samples.length * 2;
  ascii(0, "RIFF");
  view.setUint32(4, 36 + dataBytes, true);
  ascii(8, "WAVE");
  ascii(12, "fmt ");
  view.setUint32(16, 16, true);
  view.setUint16(20, 1, true); // PCM
  view.setUint16(22, 1, true); // mono
  view.setUint32(24, rate, true);
  view.setUint32(28, rate * 2, true);
  view.setUint16(32, 2, true);
  view.setUint16(34, 16, true);
  ascii(36, "data");
  view.setUint32(40, dataBytes, true);
  // WAV is little-endian; so is every platform browsers run on, but say it explicitly.
  const body = new DataView(new ArrayBuffer(dataBytes));
  for (let i = 0; i < samples.length; i++) body.setInt16(i * 2, samples[i], true);
  return new Blob([header, body.buffer], { type: "audio/wav" });
}

/** Plays question audio that arrives as 16-bit little-endian PCM on the socket. */
export class SpeechPlayer {
  constructor(context) {
    this.context = context || new AudioContext();
    this.current = null;
  }

  /** Plays `bytes` (Uint8Array of PCM) at `rate`; resolves `true` when it played to the end,
   * `false` when stopped. */
  play(bytes, rate) {
    this.stop();
    const view = new DataView(bytes.buffer, bytes.byteOffset, bytes.byteLength);
    const frames = Math.floor(bytes.byteLength / 2);
    if (frames === 0) return Promise.resolve(true);
    const buffer = this.context.createBuffer(1, frames, rate);
    const channel = buffer.getChannelData(0);
    for (let i = 0; i < frames; i++) channel[i] = view.getInt16(i * 2, true) / 32768;
    const source = this.context.createBufferSource();
    source.buffer = buffer;
    source.connect(this.context.destination);
    return new Promise((resolve) => {
      const entry = { source, resolve, stopped: false };
      source.onended = () => {
        if (this.current === entry) this.current = null;
        resolve(!entry.stopped);
      };
      this.current = entry;
      if (this.context.state === "suspended") this.context.resume().catch(() => {});
      source.start();
    });
  }

  /** Stops what is playing (barge-in, a new question, leaving). */
  stop() {
    const entry = this.current;
    if (!entry) return;
    this.current = null;
    entry.stopped = true;
    try {
      entry.source.stop();
    } catch {
      entry.resolve(false);
    }
  }
}
