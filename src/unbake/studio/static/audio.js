// The Web Audio graph of the open song: each stem through its own balance and fader into the mix
// bus, the original into its own bus. Both play all the time, so switching A/B is instant and
// stays in sync; the buses' gains choose what is heard.

const BAL_CENTRE = 1.0;

// The remix engine's pan law (unbake.remix.mixer.balance_gains): a balance control,
// sqrt(2)*(cos, sin) of (pan+1)*pi/4, exactly (1, 1) at the centre.
export function balanceGains(pan) {
  if (pan === 0) return [BAL_CENTRE, BAL_CENTRE];
  const theta = ((Math.max(-1, Math.min(1, pan)) + 1) * Math.PI) / 4;
  return [Math.SQRT2 * Math.cos(theta), Math.SQRT2 * Math.sin(theta)];
}

export const dbToGain = (db) => 10 ** (db / 20);

export class AudioGraph {
  constructor(sampleRate) {
    const Ctx = window.AudioContext || window.webkitAudioContext;
    try {
      this.ctx = new Ctx({ sampleRate, latencyHint: "playback" });
    } catch {
      this.ctx = new Ctx();
    }
    this.buffers = {};  // name -> AudioBuffer ("original" too)
    this.nodes = null;  // live graph while playing
  }

  static available() { return !!(window.AudioContext || window.webkitAudioContext); }

  async load(name, data) { this.buffers[name] = await this.ctx.decodeAudioData(data); }

  get now() { return this.ctx.currentTime; }

  // start every stem and the original at `from` seconds (looping over `range` if given);
  // returns the time playback starts; `onEnded` fires when the song ends
  start(stems, from, range, onEnded) {
    const ctx = this.ctx;
    ctx.resume();
    const when = ctx.currentTime + 0.05;
    const mixBus = ctx.createGain();
    const origBus = ctx.createGain();
    mixBus.connect(ctx.destination);
    origBus.connect(ctx.destination);
    const nodes = { mixBus, origBus, sources: [], tracks: {} };
    const play = (buffer, dest) => {
      const src = ctx.createBufferSource();
      src.buffer = buffer;
      if (range) {
        src.loop = true;
        src.loopStart = range[0];
        src.loopEnd = range[1];
      }
      src.connect(dest);
      src.start(when, from);
      nodes.sources.push(src);
      return src;
    };
    for (const s of stems) {
      const buf = this.buffers[s];
      const split = ctx.createChannelSplitter(2);
      const left = ctx.createGain();
      const right = ctx.createGain();
      const merge = ctx.createChannelMerger(2);
      const fader = ctx.createGain();
      split.connect(left, 0);
      split.connect(right, buf.numberOfChannels > 1 ? 1 : 0);  // mono stems play as dual mono
      left.connect(merge, 0, 0);
      right.connect(merge, 0, 1);
      merge.connect(fader);
      fader.connect(mixBus);
      play(buf, split);
      nodes.tracks[s] = { left, right, fader };
    }
    const first = play(this.buffers.original, origBus);
    first.onended = () => { if (this.nodes === nodes) onEnded(); };
    this.nodes = nodes;
    return when;
  }

  stop() {
    if (this.nodes) {
      for (const src of this.nodes.sources) { src.onended = null; try { src.stop(); } catch { /* not started */ } }
      this.nodes.mixBus.disconnect();
      this.nodes.origBus.disconnect();
    }
    this.nodes = null;
  }

  // gains: {tracks: {name: [left, right, fader]}, mix, original}
  setGains(gains) {
    const n = this.nodes;
    if (!n) return;
    const now = this.ctx.currentTime;
    const ramp = (param, value) => param.setTargetAtTime(value, now, 0.01);
    for (const [name, [l, r, f]] of Object.entries(gains.tracks)) {
      ramp(n.tracks[name].left.gain, l);
      ramp(n.tracks[name].right.gain, r);
      ramp(n.tracks[name].fader.gain, f);
    }
    ramp(n.mixBus.gain, gains.mix);
    ramp(n.origBus.gain, gains.original);
  }

  close() {
    this.stop();
    this.ctx.close();
  }
}
