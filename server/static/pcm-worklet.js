// AudioWorklet processor: the microphone as 16-bit PCM chunks (mono, at the context's rate)
// and a level about twenty times a second. Runs on the audio thread; posts to the page.

class PcmCapture extends AudioWorkletProcessor {
  constructor(options) {
    super();
    const opts = options.processorOptions || {};
    // 100 ms chunks by default: inside the protocol's 20–500 ms frame range.
    this.chunkFrames = opts.chunkFrames || Math.round(sampleRate / 10);
    this.chunk = new Int16Array(this.chunkFrames);
    this.filled = 0;
    this.levelEvery = Math.round(sampleRate / 20);
    this.sumSquares = 0;
    this.levelFrames = 0;
    this.peak = 0;
  }

  process(inputs) {
    const input = inputs[0];
    const channels = input ? input.length : 0;
    // Without an input (a muted or ended track) the stream continues as silence, so the
    // server's audio clock keeps running.
    const frames = channels > 0 ? input[0].length : 128;
    for (let i = 0; i < frames; i++) {
      let s = 0;
      for (let c = 0; c < channels; c++) s += input[c][i];
      if (channels > 1) s /= channels;
      if (s > 1) s = 1;
      else if (s < -1) s = -1;
      this.sumSquares += s * s;
      const a = s < 0 ? -s : s;
      if (a > this.peak) this.peak = a;
      this.levelFrames++;
      this.chunk[this.filled++] = s < 0 ? s * 0x8000 : s * 0x7fff;
      if (this.filled === this.chunkFrames) {
        this.port.postMessage({ pcm: this.chunk.buffer }, [this.chunk.buffer]);
        this.chunk = new Int16Array(this.chunkFrames);
        this.filled = 0;
      }
      if (this.levelFrames >= this.levelEvery) {
        this.port.postMessage({
          rms: Math.sqrt(this.sumSquares / this.levelFrames),
          peak: this.peak,
        });
        this.sumSquares = 0;
        this.levelFrames = 0;
        this.peak = 0;
      }
    }
    return true;
  }
}

registerProcessor("pcm-capture", PcmCapture);
