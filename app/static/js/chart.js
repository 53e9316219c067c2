// The changes-per-minute chart of the last hour (uPlot, from npm): seeded from
// GET /live/stats, then counted from the server's `counts` events (each says how many
// changes its batch held). Bars per minute, a time axis, the value under the pointer.
import uPlot from "/vendor/uPlot.esm.js";

const MINUTES = 60;
const HEIGHT = 120;

export class ChangeChart {
  constructor(container) {
    this.container = container;
    this.perMinute = new Array(MINUTES).fill(0);
    this.minuteNow = Math.floor(Date.now() / 60000);
    if (!container) return;
    this.plot = new uPlot(this.options(container.clientWidth || 360), this.data(), container);
    new ResizeObserver(() => {
      this.plot.setSize({ width: container.clientWidth || 360, height: HEIGHT });
    }).observe(container);
    setInterval(() => this.add(0), 30000); // the bars move on when nothing happens, too
  }

  options(width) {
    const color = getComputedStyle(this.container).color || "#3b6fd8";
    return {
      width,
      height: HEIGHT,
      legend: { show: true, live: true },
      cursor: { points: { show: false }, drag: { x: false, y: false } },
      scales: { x: { time: true }, y: { range: (u, min, max) => [0, Math.max(1, max)] } },
      axes: [
        { space: 60, size: 28 },
        { size: 36, incrs: [1, 2, 5, 10, 20, 50, 100, 200, 500, 1000, 2000, 5000, 10000] },
      ],
      series: [
        { label: "minute", value: (u, ts) => (ts == null ? "–" : new Date(ts * 1000).toLocaleTimeString([], { hour: "2-digit", minute: "2-digit" })) },
        {
          label: "changes",
          stroke: color,
          fill: color,
          width: 0,
          paths: uPlot.paths.bars({ size: [0.8, 40] }),
          value: (u, v) => (v == null ? "–" : String(v)),
        },
      ],
    };
  }

  /** [minute starts in seconds, changes per minute], oldest first. */
  data() {
    const first = this.minuteNow - MINUTES + 1;
    return [this.perMinute.map((_, i) => (first + i) * 60), this.perMinute.slice()];
  }

  /** Count `n` changes in the current minute (0 just moves the window) and redraw. */
  add(n) {
    const minute = Math.floor(Date.now() / 60000);
    const shift = Math.min(MINUTES, minute - this.minuteNow);
    if (shift > 0) {
      this.perMinute.splice(0, shift);
      this.perMinute.push(...new Array(shift).fill(0));
      this.minuteNow = minute;
    }
    this.perMinute[MINUTES - 1] += n;
    this.draw();
  }

  /** Start over from the server's figures (on load, and after a reconnect). */
  async load() {
    const response = await fetch("/live/stats", { headers: { Accept: "application/json" } });
    if (!response.ok) return;
    const stats = await response.json();
    this.perMinute.splice(0, MINUTES, ...stats.per_minute);
    this.minuteNow = Math.floor(Date.parse(stats.now) / 60000);
    this.add(0);
  }

  draw() {
    if (!this.plot) return;
    this.plot.setData(this.data());
    const hour = this.perMinute.reduce((a, b) => a + b);
    this.container.title = `${this.perMinute[MINUTES - 1]} changes this minute, ${hour} in the last hour`;
    this.container.dataset.lastHour = String(hour);
  }
}
